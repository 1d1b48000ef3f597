"""``python -m bntt_snntorch analyze RUN``: gammas and early exit, spike rates, operation counts and
energy of a trained run (:func:`bntt_snntorch.experiments.analyze_run`).

    python -m bntt_snntorch analyze RUN_DIR_OR_CHECKPOINT [--early-exit] [--energy] [--plots] [--neurobench]

With neither ``--early-exit`` nor ``--energy``, both analyses run. Writes CSVs, ``summary.json``,
``summary.md`` and (``--plots``) PNGs into ``RUN_DIR/analysis`` (or ``--analysis-dir``);
``--neurobench`` adds NeuroBench's metrics beside ours (``neurobench.json``, a table in ``summary.md``).
"""

from __future__ import annotations

import argparse
import sys

from .._compat import old_attribute
from ..experiments import AnalysisOptions, analyze_run
from .common import (
    add_device_flag,
    add_flag,
    command_parser,
    options_from_args,
    run_command_line,
)
from .compat import OLD_NAMES, old_script_route

DEFAULTS = AnalysisOptions


def add_analysis_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """The analysis flags (defaults: :class:`~bntt_snntorch.experiments.AnalysisOptions`)."""
    g = p.add_argument_group("analysis")
    if positional:
        g.add_argument("run", help="run folder (uses best.pt, else last.pt) or checkpoint file")
    g.add_argument("--early-exit", action="store_true", help="gamma curves, accuracy per exit step, gamma-chosen exit")
    g.add_argument("--energy", action="store_true", help="spike rates, MAC/AC counts and energy per layer")
    g.add_argument("--plots", action="store_true", help="write PNG figures")
    g.add_argument(
        "--neurobench",
        action="store_true",
        help="also run NeuroBench's Benchmark on the test set and set its metrics beside ours "
        '(pip install "bntt_snntorch[neurobench]")',
    )
    g.add_argument(
        "--exit-threshold",
        type=float,
        default=DEFAULTS.exit_threshold,
        help="exit at the first step whose layer-averaged BNTT gamma is below this",
    )
    g.add_argument("--mac-pj", type=float, default=DEFAULTS.mac_pj, help="energy of one MAC in pJ")
    g.add_argument(
        "--ac-pj",
        type=float,
        default=DEFAULTS.ac_pj,
        help="energy of one accumulate in pJ",
    )
    g.add_argument("--analysis-dir", help="where to write (default: RUN_DIR/analysis)")
    g.add_argument(
        "--energy-batches",
        type=int,
        default=DEFAULTS.energy_batches,
        help="test batches used for spike rates and energy",
    )


def get_args_parser() -> argparse.ArgumentParser:
    p = command_parser("analyze", __doc__)
    add_analysis_args(p)
    add_flag(p, "--data-dir", help="data root (default: the run's)")
    add_device_flag(p, default=DEFAULTS.device)
    add_flag(p, "--max-batches", type=int, help="test batches for accuracy (default: all)")
    return p


def main(args: argparse.Namespace) -> dict:
    """Analyse as the parsed flags say; returns the summary."""
    return analyze_run(args.run, options_from_args(AnalysisOptions, args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point (``bntt-analyze``); exit status."""
    return run_command_line(get_args_parser, main, argv)


def __getattr__(name: str):
    return old_attribute(__name__, name, OLD_NAMES[__name__])


if __name__ == "__main__":
    sys.exit(old_script_route(__spec__.name))
