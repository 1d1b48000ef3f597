"""``python -m bntt_snntorch compare-coding``: rate vs direct coding side by side (Kim et al. 2022) —
accuracy, FGSM / PGD robustness, spikes, energy (:func:`bntt_snntorch.experiments.compare_coding`).

    python -m bntt_snntorch compare-coding --dataset digits --arch mlp --num-steps 4 8 16 --num-epochs 30

For each coding (Poisson rate, direct) and each T it trains a model with the recipe
``rate-vs-direct`` into ``OUTPUT/<coding>-T<T>/`` (a finished run there is reused, one cut short resumed),
then writes ``OUTPUT/comparison.csv`` and ``.md`` and the plots ``accuracy_vs_T.png`` and
``accuracy_vs_eps.png``.
"""

from __future__ import annotations

import argparse
import sys

from ..experiments import CodingStudyOptions, compare_coding
from .common import (
    add_device_flag,
    add_flag,
    command_parser,
    options_from_args,
    run_command_line,
)
from .compat import old_script_route

DEFAULTS = CodingStudyOptions


def get_args_parser() -> argparse.ArgumentParser:
    p = command_parser("compare-coding", __doc__)
    p.add_argument("--dataset", default=DEFAULTS.dataset, help="data set")
    p.add_argument(
        "--arch",
        default=DEFAULTS.arch,
        choices=["mlp", "vgg5", "vgg9"],
        help="that work's net (on 8x8 digits its VGGs do not fire at initialisation: use mlp)",
    )
    add_flag(p, "--num-steps", nargs="+", type=int, default=DEFAULTS.num_steps, help="time steps to compare")
    add_flag(p, "--num-epochs", type=int, help="epochs (default: the recipe's, 100)")
    add_flag(p, "--batch-size", type=int, help="batch (default: the recipe's, 128)")
    add_flag(p, "--leak-mem", type=float, help="leak (default: the recipe's, 0.5)")
    p.add_argument(
        "--eps", nargs="+", type=float, default=DEFAULTS.eps, help="attack budgets, pixel units ([0, 1] scale)"
    )
    add_flag(p, "--pgd-iterations", type=int, default=DEFAULTS.pgd_iterations, help="PGD iterations")
    p.add_argument("--draws", type=int, default=DEFAULTS.draws, help="Poisson draws averaged per attack gradient")
    add_flag(p, "--data-dir", help="data root (default: $BNTT_DATA_DIR, else ./datasets)")
    add_flag(p, "--output-dir", default=DEFAULTS.output_dir, help="study folder")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    add_device_flag(p, default=DEFAULTS.device)
    add_flag(p, "--max-batches", type=int, help="test batches to attack (default: all)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    """Run the study the parsed flags describe; returns the rows of ``comparison.csv``."""
    return compare_coding(options_from_args(CodingStudyOptions, args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point; exit status."""
    return run_command_line(get_args_parser, main, argv, tune_allocator=True)


if __name__ == "__main__":
    sys.exit(old_script_route(__spec__.name))
