"""``python -m bntt_snntorch.compare_coding``: the command :mod:`bntt_snntorch.commands.compare_coding`."""

import sys

from .commands.compare_coding import *  # noqa: F403
from .commands.compare_coding import run

if __name__ == "__main__":
    sys.exit(run())
