"""Command line: ``python -m fralkit reproduce [--profile smoke|quick|gpu|paper] [--only 01 ...] [--out DIR]``."""
import sys

from .reproduce import main

if __name__ == "__main__":
    sys.exit(main())
