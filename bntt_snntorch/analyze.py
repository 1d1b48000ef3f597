"""``python -m bntt_snntorch.analyze``: the command :mod:`bntt_snntorch.commands.analyze`."""

import sys

from .commands.analyze import *  # noqa: F403
from .commands.analyze import run

if __name__ == "__main__":
    sys.exit(run())
