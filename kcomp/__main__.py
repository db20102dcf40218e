"""`python -m kcomp ...`: the kcomp command line."""
import sys

from .cli import main

sys.exit(main())
