"""DVC stage 'report': a thin call into `genflow report` (see dvc.yaml; --help for options)."""
import sys

from genflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
