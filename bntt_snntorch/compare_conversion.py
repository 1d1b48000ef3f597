"""``python -m bntt_snntorch.compare_conversion``: the command :mod:`bntt_snntorch.commands.compare_conversion`."""

import sys

from .commands.compare_conversion import *  # noqa: F403
from .commands.compare_conversion import run

if __name__ == "__main__":
    sys.exit(run())
