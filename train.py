#!/usr/bin/env python
"""Train a BNTT spiking network; ``python train.py --help`` lists the flags."""

import sys

from bntt_snntorch.commands.train import run

if __name__ == "__main__":
    sys.exit(run())
