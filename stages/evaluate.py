"""DVC stage 'evaluate': a thin call into `genflow evaluate` (see dvc.yaml; --help for options)."""
import sys

from genflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
