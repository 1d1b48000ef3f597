"""``python -m bntt_snntorch compare-training``: BPTT vs online training (SLTT, SLTT-K, OTTT) on equal
terms — test accuracy, throughput, memory (:func:`bntt_snntorch.experiments.compare_training`).

    python -m bntt_snntorch compare-training --dataset digits --seeds 3 --output-dir results/online-training-digits

Trains (or reuses) ``OUTPUT/<mode>-seed<s>`` for every mode and seed with the data set's recipe;
writes ``comparison.md`` / ``.csv`` and ``accuracy.png``.
"""

from __future__ import annotations

import argparse

from ..experiments import TrainingStudyOptions, compare_training
from .common import (
    add_device_flag,
    add_flag,
    add_recipe_flag,
    command_parser,
    options_from_args,
    run_command_line,
)

DEFAULTS = TrainingStudyOptions


def get_args_parser() -> argparse.ArgumentParser:
    p = command_parser("compare-training", __doc__)
    p.add_argument("--dataset", default=DEFAULTS.dataset, choices=["digits", "digits-dvs", "cifar10", "cifar10-dvs"])
    p.add_argument("--modes", nargs="+", choices=list(DEFAULTS.modes), default=DEFAULTS.modes, help="rules to compare")
    add_flag(p, "--sltt-k", type=int, default=DEFAULTS.sltt_k, help="K of SLTT-K")
    p.add_argument("--seeds", type=int, default=DEFAULTS.seeds, help="seeds 0..N-1 per mode")
    add_recipe_flag(p)
    add_flag(p, "--num-epochs", type=int, help="epochs (default: the recipe's)")
    add_flag(p, "--data-dir", help="data root (default: $BNTT_DATA_DIR, else ./datasets)")
    add_flag(p, "--output-dir", help="default: runs/online-training-<dataset>")
    add_device_flag(p, default=DEFAULTS.device)
    add_flag(p, "--max-batches", type=int, help="batches per epoch (short runs)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    """Run the study the parsed flags describe; returns the table rows."""
    return compare_training(options_from_args(TrainingStudyOptions, args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point; exit status."""
    return run_command_line(get_args_parser, main, argv, tune_allocator=True)
