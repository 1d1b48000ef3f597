"""``python -m bntt_snntorch <command> [flags]``: every command line of the package (see
:mod:`bntt_snntorch.commands`)."""

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
