"""DVC stage 'export': a thin call into `genflow export` (see dvc.yaml; --help for options)."""
import sys

from genflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
