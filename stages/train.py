"""DVC stage 'train': a thin call into `genflow train` (see dvc.yaml; --help for options)."""
import sys

from genflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
