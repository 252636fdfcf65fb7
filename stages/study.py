"""DVC stages of a study (presets/study/dvc.yaml): a thin call into `genflow study` (--help for options)."""
import sys

from genflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", *sys.argv[1:]]))
