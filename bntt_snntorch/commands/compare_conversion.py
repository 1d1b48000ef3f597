"""``python -m bntt_snntorch compare-conversion``: full-precision vs binary ANN -> SNN conversion
side by side (Lu & Sengupta 2020), offline on digits (:func:`bntt_snntorch.experiments.compare_conversion`).

    python -m bntt_snntorch compare-conversion --output-dir results/bsnn-digits --num-steps 100

Trains (or reuses) ``OUTPUT/fp`` and ``OUTPUT/binary`` with the recipes ``bsnn-digits-fp`` /
``bsnn-digits-binary``, converts each with and without ``--one-step`` into
``OUTPUT/<precision>-<mode>/``, and writes ``OUTPUT/comparison.md`` / ``.csv`` and
``accuracy_vs_time.png``.
"""

from __future__ import annotations

import argparse
import sys

from ..experiments import ConversionStudyOptions, compare_conversion
from .common import add_flag, command_parser, options_from_args, run_command_line
from .compat import old_script_route

DEFAULTS = ConversionStudyOptions


def get_args_parser() -> argparse.ArgumentParser:
    p = command_parser("compare-conversion", __doc__)
    add_flag(p, "--output-dir", default=DEFAULTS.output_dir, help="study folder")
    add_flag(p, "--num-steps", type=int, default=DEFAULTS.num_steps, help="simulation steps")
    p.add_argument("--percentile", type=float, default=DEFAULTS.percentile)
    add_flag(
        p,
        "--norm-images",
        type=int,
        default=DEFAULTS.norm_images,
        help="balancing images (digits has 1,437 training images: all of them)",
    )
    add_flag(p, "--num-epochs", type=int, help="ANN epochs (default: the recipe's, 40)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    """Run the study the parsed flags describe; returns the rows of ``comparison.csv``."""
    return compare_conversion(options_from_args(ConversionStudyOptions, args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point; exit status."""
    return run_command_line(get_args_parser, main, argv)


if __name__ == "__main__":
    sys.exit(old_script_route(__spec__.name))
