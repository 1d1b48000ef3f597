"""``bntt-export`` / ``python -m bntt_snntorch export``: a trained spiking run as a NIR file, with a report
of what is exact (:func:`bntt_snntorch.experiments.export_run`).

    bntt-export --checkpoint RUN/best.pt --output model.nir

Writes ``model.nir`` (NIR 1.0, HDF5) and ``model.fidelity.md`` beside it: for each node ``exact`` or
``approximate`` and why, the input the graph expects and its readout. Needs the nir extra
(``pip install 'bntt_snntorch[nir]'``). Train with ``--norm bn --neuron bntt_leaky_zero`` for a network
whose export is exact end to end.
"""

from __future__ import annotations

import argparse

from ..experiments import ExportOptions, export_run
from .common import HelpFormatter, run_command_line

DEFAULTS = ExportOptions


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bntt-export", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder or checkpoint file (RUN/best.pt)")
    p.add_argument("--output", required=True, help="the NIR file to write (model.nir)")
    p.add_argument("--dt", type=float, default=DEFAULTS.dt, help="time step of the LIF discretisation, seconds")
    return p


def main(args: argparse.Namespace):
    """Export as the parsed flags say; returns the fidelity report."""
    return export_run(args.checkpoint, args.output, ExportOptions(dt=args.dt))


def run(argv: list[str] | None = None) -> int:
    """Console entry point (``bntt-export``); exit status."""
    return run_command_line(get_args_parser, main, argv)
