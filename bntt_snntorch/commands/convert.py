"""``python -m bntt_snntorch convert``: convert a trained ANN to a spiking network and measure its
accuracy after every step (:func:`bntt_snntorch.experiments.convert_run`).

    python -m bntt_snntorch convert --output-dir DIR --model RUN_OR_CHECKPOINT [--num-steps 100] ...

The flags are those of the original conversion script (Lu & Sengupta 2020); its spellings
``--job-dir``, ``--time``, ``--norm``, ``--data``, ``--gpu``, ``--n_workers`` are aliases.
``--model`` is a run folder or checkpoint (an ANN trained with a ``bsnn-*`` recipe), or a plain
state dict of the original code (then ``--arch`` and ``--dataset`` are required). Writes into
``--output-dir``: the accuracy after every step 1..T (``--results-file``, CSV), ``summary.json``
(ANN accuracy, per-layer lambdas) and ``accuracy_vs_time.png``.
"""

from __future__ import annotations

import argparse
import sys

from .._compat import old_attribute
from ..experiments import ConversionOptions, convert_run
from ..models import is_ann, list_models
from .common import (
    add_device_flag,
    add_flag,
    command_parser,
    options_from_args,
    run_command_line,
)
from .compat import OLD_NAMES, old_script_route

DEFAULTS = ConversionOptions


def get_args_parser() -> argparse.ArgumentParser:
    p = command_parser("convert", __doc__)
    add_flag(p, "--output-dir", required=True, help="output folder")
    p.add_argument("--model", required=True, help="run folder / checkpoint, or a state dict of the original code")
    add_flag(
        p,
        "--results-file",
        default=DEFAULTS.results_file,
        help="CSV of accuracy per step",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="seed of the choice of balancing images",
    )
    add_flag(
        p,
        "--num-steps",
        type=int,
        default=DEFAULTS.num_steps,
        help="simulation time steps T",
    )
    add_flag(
        p,
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help="images per batch",
    )
    add_flag(
        p,
        "--num-workers",
        type=int,
        default=DEFAULTS.num_workers,
        help="data-loading processes (-1: 4 on a GPU, else 0)",
    )
    add_flag(
        p,
        "--norm-images",
        type=int,
        default=DEFAULTS.norm_images,
        help="training images for threshold balancing",
    )
    add_device_flag(p, default=DEFAULTS.device)
    add_flag(
        p,
        "--one-step",
        action="store_true",
        help="propagate an input through all layers in one step (default: one step per layer, as BindsNET)",
    )
    add_flag(p, "--data-dir", help="data root (default: $BNTT_DATA_DIR, else ./datasets)")
    p.add_argument(
        "--arch",
        choices=[m for m in list_models() if is_ann(m)],
        help="expected architecture (required for a plain state dict)",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=DEFAULTS.percentile,
        help="percentile of each layer's activations used as lambda",
    )
    add_flag(p, "--eval-size", type=int, help="test images to evaluate (default: all)")
    p.add_argument("--dataset", help="data set (default: the checkpoint's)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the tqdm bars")
    return p


def main(args: argparse.Namespace) -> dict:
    """Convert as the parsed flags say; returns the summary."""
    return convert_run(args.model, args.output_dir, options_from_args(ConversionOptions, args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point (``bntt-convert``); user errors become one line on stderr (exit 2)."""
    return run_command_line(get_args_parser, main, argv)


def __getattr__(name: str):
    return old_attribute(__name__, name, OLD_NAMES[__name__])


if __name__ == "__main__":
    sys.exit(old_script_route(__spec__.name))
