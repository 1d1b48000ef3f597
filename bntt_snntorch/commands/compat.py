"""The old routes that run a command or an experiment (the list of every old route, and the library's own:
:mod:`bntt_snntorch._compat`): the five alias modules at the package root (``python -m bntt_snntorch.analyze``
and its siblings: :func:`alias_module`), the command modules run as scripts (:func:`old_script_route`),
``train.py convert`` / ``--evaluate`` (:func:`old_train_route`, :func:`add_old_train_flags`) and the old names of
the command modules (:data:`OLD_NAMES`). Each use warns naming its replacement; all go away in
:data:`~bntt_snntorch._compat.REMOVED_IN`."""

from __future__ import annotations

import argparse
import sys

from .._compat import ALIAS_MODULES, SCRIPT_MODULES, SINCE, deprecated
from ..experiments import AnalysisOptions, ConversionOptions, analyze_run, convert_run
from . import command_module
from .common import exit_status, options_from_args


def _run_command(old: str, command: str, argv: list[str] | None = None) -> int:
    deprecated(old, stacklevel=3)
    return command_module(command).run(sys.argv[1:] if argv is None else argv)


def alias_module(name: str, module_name: str) -> None:
    """The whole body of the alias module ``name`` (``bntt_snntorch.analyze``, ...): run as a script
    (``module_name == "__main__"``) it runs its command; imported, its attributes are the command
    module's. Both warn."""
    command = ALIAS_MODULES[name]
    if module_name == "__main__":
        sys.exit(_run_command(name, command))

    def forward(attribute: str):
        deprecated(name)
        return getattr(command_module(command), attribute)

    sys.modules[module_name].__getattr__ = forward


def old_script_route(module: str) -> int:
    """``python -m bntt_snntorch.commands.<module>``: run its command, with the warning; exit status."""
    return _run_command(f"python -m {module}", SCRIPT_MODULES[module])


def add_old_train_flags(parser: argparse.ArgumentParser) -> None:
    """``train.py --evaluate RUN`` and the analysis flags that go with it."""
    parser.add_argument(
        "--evaluate", metavar="RUN_OR_CHECKPOINT", help=f"deprecated since {SINCE}: python -m bntt_snntorch analyze RUN"
    )
    command_module("analyze").add_analysis_args(parser, positional=False)


def old_train_route(argv: list[str]) -> int | None:
    """The exit status of ``train.py convert ...`` or ``train.py --evaluate RUN ...`` run as the commands
    that replace them; None for any other command line."""
    if argv[:1] == ["convert"]:
        return _run_command("train.py convert", "convert", argv[1:])
    if not any(a == "--evaluate" or a.startswith("--evaluate=") for a in argv):
        return None
    args = command_module("train").get_args_parser().parse_args(argv)
    deprecated("train.py --evaluate RUN", stacklevel=2)
    options = options_from_args(AnalysisOptions, args)
    return exit_status(lambda: analyze_run(args.evaluate, options))


def _analyze(run, **options) -> dict:
    return analyze_run(run, AnalysisOptions(**options))


def _convert_checkpoint(model, output_dir, *, norm: int | None = None, **options) -> dict:
    if norm is not None:
        options["norm_images"] = norm
    return convert_run(model, output_dir, ConversionOptions(**options))


#: The old names of the command modules (module -> old name -> its value, made on use).
OLD_NAMES = {
    "bntt_snntorch.commands.analyze": {"analyze": lambda: _analyze},
    "bntt_snntorch.commands.convert": {"convert_checkpoint": lambda: _convert_checkpoint},
}
