"""What every command shares: the flag spellings, and user errors as one line and an exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields

from .._compat import add_old_flags
from ..data import CorruptRecordingError, DatasetNotFoundError
from ..training.config import ConfigError
from ..training.runs import CheckpointError
from ..utils import tune_cpu_allocator

# One spelling per concept (dash style); the seed repositories' spellings stay as aliases, so
# their command lines run unchanged. Every command declares its flags through add_flag.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "--num-steps": ("--num_steps", "--T", "--time"),  # BNTT seed: --num_steps; rate-vs-direct: --T; conversion: --time
    "--batch-size": ("--batch_size",),
    "--leak-mem": ("--leak_mem",),
    "--num-workers": ("--num_workers", "--n-workers", "--n_workers"),
    "--num-epochs": ("--num_epochs",),
    "--data-dir": ("--data_dir", "--data"),
    "--output-dir": ("--output_dir", "--job-dir", "--job_dir"),
    "--max-batches": ("--max_batches",),
    "--save-every": ("--save_every",),
    "--channels-last": ("--channels_last",),
    "--dvs-size": ("--dvs_size",),
    "--augment": ("--dvs-augment", "--dvs_augment"),  # --dvs-augment: the flag's name before digits took it
    "--skip-corrupt": ("--skip_corrupt",),
    "--results-file": ("--results_file",),
    "--one-step": ("--one_step",),
    "--eval-size": ("--eval_size",),
    "--norm-images": ("--norm",),  # the conversion script's spelling
    "--sltt-k": ("--sltt_k",),
    "--lr-scheduler": ("--lr_scheduler",),
    "--label-smoothing": ("--label_smoothing",),
    "--optimizer": ("--opt",),  # torchvision's references/classification spelling
    "--weight-decay": ("--weight_decay", "--wd"),  # the same
}

USER_ERRORS = (ConfigError, CheckpointError, DatasetNotFoundError, CorruptRecordingError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; each flag's help ends with its default when it has one (the
    options dataclass's value, so the default is written in one place)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and action.option_strings
            and "%(default)" not in help_text
        ):
            help_text += " (default: %(default)s)"
        return help_text


def add_flag(parser, flag: str, **kwargs) -> argparse.Action:
    """``parser.add_argument(flag, *its aliases, dest=<flag with underscores>, **kwargs)``."""
    kwargs.setdefault("dest", flag.lstrip("-").replace("-", "_"))
    action = parser.add_argument(flag, *FLAG_ALIASES.get(flag, ()), **kwargs)
    add_old_flags(parser, flag, **kwargs)
    return action


def add_recipe_flag(parser) -> None:
    """``--recipe NAME``: the hyper-parameter set a command trains with (default: the data set's)."""
    from ..training import RECIPES

    parser.add_argument("--recipe", choices=sorted(RECIPES), help="hyper-parameter set (default: by data set)")


def add_device_flag(parser, default: str | None = "auto") -> None:
    """``--device`` (auto, cpu, cuda, cuda:N) and the conversion code's ``--gpu`` (= ``--device cuda``);
    ``default=None`` leaves an unset flag to the config's own default (auto)."""
    unset = " (default: auto)" if default is None else ""  # else the help formatter shows the default
    parser.add_argument("--device", default=default, help=f"auto, cpu, cuda or cuda:N{unset}")
    parser.add_argument("--gpu", dest="device", action="store_const", const="cuda", help="the same as --device cuda")


def run_command_line(get_args_parser, main, argv: list[str] | None = None, *, tune_allocator: bool = False) -> int:
    """A command's console entry point: parse ``argv`` with its parser, then ``main(args)`` under
    :func:`exit_status`; ``tune_allocator``: tune the CPU allocator first (the training studies)."""
    args = get_args_parser().parse_args(argv)
    if tune_allocator:
        tune_cpu_allocator()
    return exit_status(lambda: main(args))


def command_parser(name: str, description: str | None) -> argparse.ArgumentParser:
    """The parser of ``python -m bntt_snntorch <name>``: its module docstring as the description."""
    return argparse.ArgumentParser(
        prog=f"python -m bntt_snntorch {name}", description=description, formatter_class=HelpFormatter
    )


def exit_status(action: Callable[[], object]) -> int:
    """Run ``action``; a user error is one line on stderr and exit status 2, a diverged run 1, else 0."""
    try:
        action()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"error: training diverged: {err}", file=sys.stderr)
        return 1
    return 0


def options_from_args(cls, args: argparse.Namespace, **values):
    """The options dataclass ``cls`` from parsed flags: every field whose flag the parser has (same
    name) and the user set (not None), then ``values``; the other fields keep ``cls``'s defaults."""
    known = {f.name for f in fields(cls)}
    parsed = {k: v for k, v in vars(args).items() if k in known and v is not None}
    for name, value in parsed.items():
        if isinstance(value, list):
            parsed[name] = tuple(value)
    return cls(**{**parsed, **values})
