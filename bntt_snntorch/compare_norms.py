"""``python -m bntt_snntorch.compare_norms``: the command :mod:`bntt_snntorch.commands.compare_norms`."""

import sys

from .commands.compare_norms import *  # noqa: F403
from .commands.compare_norms import run

if __name__ == "__main__":
    sys.exit(run())
