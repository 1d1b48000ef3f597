"""``train.py`` / ``python -m bntt_snntorch train``: the BNTT seed's command line, on any
registered model, neuron, norm and data set.

``get_args_parser()`` builds the parser, ``config_from_args(args)`` turns parsed flags into a
:class:`~bntt_snntorch.TrainConfig`, ``main(args)`` trains (:func:`bntt_snntorch.train`) and
returns the :class:`~bntt_snntorch.TrainResult`; ``run(argv)`` is the console entry point
(user errors: one line on stderr, exit status 2). Its old routes (``train.py convert``,
``--evaluate``) are in :mod:`bntt_snntorch.commands.compat`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from ..data import list_datasets
from ..models import list_models
from ..neurons import list_neurons
from ..temporal_norm import list_norms
from ..training import TrainConfig, TrainResult, train
from ..training.recipes import ARCH_ALIASES
from ..utils import tune_cpu_allocator
from .common import HelpFormatter, add_device_flag, add_flag, add_recipe_flag, exit_status
from .compat import add_old_train_flags, old_script_route, old_train_route


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def get_args_parser() -> argparse.ArgumentParser:
    """The parser; flags left unset (None) are filled from the recipe."""
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train a BNTT spiking network. With no flags: a small BNTT net on sklearn's digits, offline. "
        "Other commands: python -m bntt_snntorch --help.",
        formatter_class=HelpFormatter,
    )
    g = p.add_argument_group("model and optimisation (the BNTT seed's flags; unset ones come from the recipe)")
    add_flag(g, "--num-steps", type=_positive(int), help="time steps T")
    g.add_argument("--lr", type=_positive(float), help="initial learning rate")
    g.add_argument(
        "--arch",
        choices=sorted({*list_models(), *(a for aliases in ARCH_ALIASES.values() for a in aliases)}),
        help="model name (mlp / vgg5 / vgg9 with --recipe rate-vs-direct: that work's nets)",
    )
    g.add_argument("--dataset", choices=list_datasets(), help=f"data set (default: {TrainConfig.dataset})")
    add_flag(g, "--batch-size", type=_positive(int), help="images per batch (the global batch under torchrun)")
    add_flag(g, "--leak-mem", type=float, help="membrane leak (beta) in [0, 1]")
    add_flag(g, "--num-workers", type=int, help="data-loading processes")
    add_flag(g, "--optimizer", choices=["sgd", "adam"], help="optimiser (recipe digits: sgd)")
    add_flag(g, "--momentum", type=float, help="SGD momentum in [0, 1) (recipe digits: 0.9)")
    add_flag(g, "--weight-decay", type=float, help="L2 weight decay, >= 0 (recipe digits: 1e-4)")
    add_flag(
        g,
        "--lr-scheduler",
        choices=["step", "cosine"],
        help="step: lr x gamma at the recipe's milestones; cosine: from --lr to 0 over the epochs (default: step)",
    )
    add_flag(g, "--label-smoothing", type=float, help="cross-entropy label smoothing in [0, 1) (recipe digits: 0.1)")
    add_flag(
        g,
        "--augment",
        choices=["none", "flip", "translate", "both"],
        help="training augmentation: event frames flipped and / or shifted (recipes bntt-dvs, digits-dvs: both); "
        "digits shifted by up to a pixel (translate; recipe digits: translate)",
    )
    add_flag(g, "--num-epochs", type=_positive(int), help="epochs")
    g.add_argument(
        "--norm",
        choices=list_norms(),
        help="temporal normalisation of the BNTT VGGs: BNTT (per-step statistics and gamma), one BN over all steps, "
        "tdBN, TEBN, TAB (statistics of steps 0..t, per-step affine) or none (the norm registry: "
        f"bntt_snntorch.list_norms(); default: {TrainConfig.norm})",
    )
    g.add_argument(
        "--neuron",
        choices=list_neurons(),
        help="neuron of the spiking models: the BNTT seed's (soft reset), the same with reset to zero, "
        "snnTorch's Leaky, or MPBN (a batch norm on the membrane before firing) (the neuron registry: "
        f"bntt_snntorch.list_neurons(); default: {TrainConfig.neuron})",
    )
    g.add_argument(
        "--encode",
        choices=["p", "d", "none"],
        help="input coding: p = signed Poisson rate, d = direct, none = images as they are (ANNs to convert)",
    )
    g.add_argument(
        "--training",
        choices=["bptt", "sltt", "ottt"],
        help="gradient rule: bptt (through time; default), or online with memory independent of T: sltt (spatial "
        "only) or ottt (spatial, weights from presynaptic traces); online needs a norm with per-step statistics",
    )
    add_flag(g, "--sltt-k", type=_positive(int), help="SLTT-K: backpropagate K random steps of each batch")
    g = p.add_argument_group("event data (cifar10-dvs, nmnist, dvsgesture, ncaltech101, digits-dvs)")
    add_flag(
        g,
        "--dvs-size",
        type=_positive(int),
        help="frame size: events are downsampled to SIZE x SIZE (recipe bntt-dvs: 64; default the sensor's)",
    )
    add_flag(
        g,
        "--skip-corrupt",
        action="store_true",
        default=None,
        help="leave out recordings that cannot be decoded (with a warning) instead of stopping",
    )
    g = p.add_argument_group("run")
    add_recipe_flag(g)
    add_flag(g, "--data-dir", help="data root (default: $BNTT_DATA_DIR, else ./datasets)")
    g.add_argument(
        "--download", action="store_true", default=None, help="let torchvision / tonic download the data set if missing"
    )
    add_device_flag(g, default=None)
    g.add_argument("--seed", type=int, help=f"random seed (default: {TrainConfig.seed})")
    add_flag(g, "--output-dir", help="run folder (default: $BNTT_RUNS_DIR or ./runs, then <dataset>-<arch>-<time>)")
    add_flag(g, "--max-batches", type=_positive(int), help="batches per epoch (short runs)")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="hide the tqdm bars")
    g.add_argument(
        "--resume", metavar="PATH|auto", help="continue from a checkpoint (auto: <output-dir>/last.pt if it exists)"
    )
    add_flag(g, "--save-every", type=_positive(int), help="also checkpoint every N training steps (mid-epoch)")
    g.add_argument("--tensorboard", action="store_true", default=None, help="log to <output-dir>/tensorboard")
    g = p.add_argument_group("speed")
    g.add_argument(
        "--amp",
        nargs="?",
        const="bf16",
        choices=["bf16", "fp16"],
        help="mixed precision: bfloat16 autocast (CPU or GPU), or fp16 with a GradScaler (CUDA)",
    )
    g.add_argument(
        "--compile", action="store_true", default=None, help="torch.compile the model (first batches are slow)"
    )
    add_flag(
        g, "--channels-last", action="store_true", default=None, help="channels_last memory format for the convolutions"
    )
    g.add_argument(
        "--memory",
        choices=["default", "low"],
        help="what the fused blocks keep for backward: default (the synapse's output and input), or low (its input "
        "only, the output recomputed in backward: the same gradients, one more convolution a block; "
        "bntt_snntorch.set_memory)",
    )
    add_old_train_flags(p)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed flags: the recipe, with every flag the user set as an override."""
    names = {f.name for f in fields(TrainConfig)} - {"recipe"}
    return TrainConfig.from_recipe(args.recipe, **{k: v for k, v in vars(args).items() if k in names})


def main(args: argparse.Namespace) -> TrainResult:
    """Train as the parsed flags say; returns the :class:`TrainResult`."""
    return train(config_from_args(args))


def run(argv: list[str] | None = None) -> int:
    """Console entry point (``train.py``, ``bntt-train``): parse, then train; exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    tune_cpu_allocator()
    old = old_train_route(argv)
    if old is not None:
        return old
    args = get_args_parser().parse_args(argv)
    return exit_status(lambda: main(args))


if __name__ == "__main__":
    sys.exit(old_script_route(__spec__.name))
