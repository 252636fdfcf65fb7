"""DVC stage 'prepare': a thin call into `genflow prepare` (see dvc.yaml; --help for options)."""
import sys

from genflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
