"""DVC stage 'featurenet': a thin call into `genflow featurenet` (see dvc.yaml; --help for options)."""
import sys

from genflow.cli import main

if __name__ == "__main__":
    sys.exit(main(["featurenet", *sys.argv[1:]]))
