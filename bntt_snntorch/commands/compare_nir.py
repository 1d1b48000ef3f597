"""``python -m bntt_snntorch compare-nir``: a trained network against its NIR file as we, SpikingJelly and
snnTorch read it back — accuracy and spike-level differences (:func:`bntt_snntorch.experiments.compare_nir`).

    python -m bntt_snntorch compare-nir --dataset digits --output-dir results/nir-digits

Trains (or reuses) ``OUTPUT/exact/run`` (``--norm bn --neuron bntt_leaky_zero``) and ``OUTPUT/bntt/run``
(the default BNTT network), exports each to ``model.nir``, writes ``comparison.md`` / ``.csv``.
"""

from __future__ import annotations

import argparse

from ..experiments import NIRStudyOptions, compare_nir
from .common import add_flag, add_recipe_flag, command_parser, options_from_args, run_command_line

DEFAULTS = NIRStudyOptions


def get_args_parser() -> argparse.ArgumentParser:
    p = command_parser("compare-nir", __doc__)
    p.add_argument("--dataset", default=DEFAULTS.dataset, choices=["digits", "digits-dvs"])
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    add_recipe_flag(p)
    add_flag(p, "--num-epochs", type=int, help="epochs (default: the recipe's)")
    add_flag(p, "--output-dir", help="default: runs/nir-<dataset>")
    add_flag(p, "--max-test-images", type=int, help="test images to read back (default: all)")
    add_flag(p, "--data-dir", help="data root (default: $BNTT_DATA_DIR, else ./datasets)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    """Run the study the parsed flags describe; returns the rows."""
    return compare_nir(options_from_args(NIRStudyOptions, args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point; exit status."""
    return run_command_line(get_args_parser, main, argv)
