"""``python -m bntt_snntorch compare-norms``: is BNTT worth it? The registered temporal
normalisations side by side, same recipe, same seeds (:func:`bntt_snntorch.experiments.compare_norms`).

    python -m bntt_snntorch compare-norms --dataset digits --seeds 3 --output-dir results/norm-study-digits

Trains (or reuses) ``OUTPUT/<variant>-seed<s>`` for every ``--norms`` variant and seed with the data
set's recipe, then measures test accuracy after every exit step, spike rate, energy and training
throughput; writes ``comparison.md`` / ``.csv``, ``accuracy_per_step.csv``, ``accuracy_vs_step.png``
and ``gammas.png``.
"""

from __future__ import annotations

import argparse
import sys

from ..experiments import NormStudyOptions, compare_norms
from ..experiments.norm_study import study_variants
from .common import (
    add_device_flag,
    add_flag,
    add_recipe_flag,
    command_parser,
    options_from_args,
    run_command_line,
)
from .compat import old_script_route

DEFAULTS = NormStudyOptions


def get_args_parser() -> argparse.ArgumentParser:
    p = command_parser("compare-norms", __doc__)
    p.add_argument(
        "--dataset", default=DEFAULTS.dataset, choices=["digits", "digits-dvs", "cifar10", "cifar100", "cifar10-dvs"]
    )
    p.add_argument(
        "--norms",
        nargs="+",
        choices=study_variants(),
        default=DEFAULTS().norms,
        help="variants to compare: the registered norms, and mpbn (a BN over T*B and one on the membrane); "
        "default: all",
    )
    p.add_argument("--seeds", type=int, default=DEFAULTS.seeds, help="seeds 0..N-1 per variant")
    add_recipe_flag(p)
    add_flag(p, "--num-epochs", type=int, help="epochs (default: the recipe's)")
    add_flag(p, "--data-dir", help="data root (default: $BNTT_DATA_DIR, else ./datasets)")
    add_flag(p, "--output-dir", help="default: runs/norm-study-<dataset>")
    add_device_flag(p, default=DEFAULTS.device)
    add_flag(p, "--max-batches", type=int, help="batches per epoch and test batches (short runs)")
    p.add_argument(
        "--energy-batches", type=int, default=DEFAULTS.energy_batches, help="test batches for spike rates and energy"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    """Run the study the parsed flags describe; returns the table rows."""
    return compare_norms(options_from_args(NormStudyOptions, args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point; exit status."""
    return run_command_line(get_args_parser, main, argv, tune_allocator=True)


if __name__ == "__main__":
    sys.exit(old_script_route(__spec__.name))
