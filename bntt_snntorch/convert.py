"""``python -m bntt_snntorch.convert``: the command :mod:`bntt_snntorch.commands.convert`."""

import sys

from .commands.convert import *  # noqa: F403
from .commands.convert import run

if __name__ == "__main__":
    sys.exit(run())
