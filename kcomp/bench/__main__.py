"""python -m kcomp.bench: the same as `kcomp bench`."""
import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
