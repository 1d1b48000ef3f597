"""Every route kept only so that 0.1 code, command lines and environments keep working: one place.

:data:`ROUTES` lists each old route, what replaces it and its kind; all go away in
:data:`REMOVED_IN`. The functions below are the routes themselves; each use warns with a
``DeprecationWarning`` naming the replacement (:func:`deprecated`; the command-line routes show it on
the terminal too). Who calls in: the five alias modules at the package root (``python -m
bntt_snntorch.analyze`` and its siblings: :func:`alias_module`), the command modules run as scripts
(:func:`old_script_route`), ``train.py`` (:func:`old_train_route`, :func:`add_old_train_flags`), the
flag table (:data:`OLD_FLAGS`), module ``__getattr__`` hooks (:func:`old_attribute`), the attack
functions (:func:`renamed_keywords`), the kernel plan (:func:`old_kernel_setting`) and the two old call
forms of the step-mode layers (:func:`deprecated`). Removing 0.1 compatibility is deleting this file,
the alias modules and those calls.

This module imports nothing of the package when it is imported, so the library tier can use it; a
route that leads to a command or an experiment reaches it by name when called (as ``python -m
bntt_snntorch <command>`` reaches the commands).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

SINCE = "0.2"
REMOVED_IN = "0.3"


@dataclass(frozen=True)
class Route:
    """One old route: what 0.1 code or a 0.1 command line wrote (``old``), what to write now (``new``),
    and its ``kind`` ("module", "script", "command", "attribute", "keyword", "flag", "environment",
    "call")."""

    old: str
    new: str
    kind: str


_ALIAS_MODULES = {  # the package-root alias modules -> their commands
    "bntt_snntorch.analyze": "analyze",
    "bntt_snntorch.compare_norms": "compare-norms",
    "bntt_snntorch.compare_coding": "compare-coding",
    "bntt_snntorch.convert": "convert",
    "bntt_snntorch.compare_conversion": "compare-conversion",
}
_SCRIPT_MODULES = {  # command modules once run as scripts -> their commands
    "bntt_snntorch.commands.train": "train",
    "bntt_snntorch.commands.analyze": "analyze",
    "bntt_snntorch.commands.convert": "convert",
    "bntt_snntorch.commands.compare_norms": "compare-norms",
    "bntt_snntorch.commands.compare_coding": "compare-coding",
    "bntt_snntorch.commands.compare_conversion": "compare-conversion",
}
OLD_FLAGS: dict[str, tuple[str, ...]] = {"--pgd-iterations": ("--pgd-steps", "--pgd_steps")}
_KERNEL_SETTINGS = {"0": "eager"}  # 1 (compile) is auto since the compiled steps were retired in 0.3

ROUTES: tuple[Route, ...] = (
    *(
        Route(module, f"python -m bntt_snntorch {command} (in Python: bntt_snntorch.commands)", "module")
        for module, command in _ALIAS_MODULES.items()
    ),
    *(Route(f"python -m {module}", f"python -m bntt_snntorch {c}", "script") for module, c in _SCRIPT_MODULES.items()),
    Route("train.py convert", "python -m bntt_snntorch convert", "command"),
    Route("train.py --evaluate RUN", "python -m bntt_snntorch analyze RUN", "command"),
    Route(
        "bntt_snntorch.commands.analyze.analyze(run, **options)",
        "bntt_snntorch.experiments.analyze_run(run, AnalysisOptions(**options))",
        "attribute",
    ),
    Route(
        "bntt_snntorch.commands.convert.convert_checkpoint(model, output_dir, **options)",
        "bntt_snntorch.experiments.convert_run(model, output_dir, ConversionOptions(**options)); norm= is norm_images=",
        "attribute",
    ),
    Route(
        "bntt_snntorch.temporal_norm.temporal_norm(kind, num_features, time_steps, dims, bntt_eps)",
        "create_norm(name, num_features, num_steps, dims, **options)",
        "attribute",
    ),
    Route("bntt_snntorch.temporal_norm.NORMS", "list_norms()", "attribute"),
    Route("bntt_snntorch.data.EventOptions", "bntt_snntorch.data.DataOptions", "attribute"),
    Route("pgd(..., steps=)", "pgd(..., iterations=)", "keyword"),
    Route("robust_accuracy(..., pgd_steps=)", "robust_accuracy(..., pgd_iterations=)", "keyword"),
    *(Route(old, new, "flag") for new, olds in OLD_FLAGS.items() for old in olds),
    Route("BNTT_COMPILED_KERNELS=0|1", "BNTT_KERNELS=eager|auto", "environment"),
    Route("norm(x, t) on a norm in step_mode='m'", "norm.step(x, t), or step_mode='s'", "call"),
    Route(
        "a sequence (T, B, ...) given to a ThroughTime layer in step_mode='s'",
        "step_mode='m' (or .multi_step(x_seq), or bntt_snntorch.set_step_mode(net, 'm'))",
        "call",
    ),
)
_BY_OLD = {route.old: route for route in ROUTES}
_SHOWN = ("module", "script", "command", "flag")  # command-line routes: shown even where Python hides them


def deprecated(old: str, stacklevel: int = 2) -> None:
    """Warn that route ``old`` (a :data:`ROUTES` entry) is deprecated, naming its replacement.
    ``stacklevel`` counts from the caller of ``deprecated`` (2: whoever called that caller)."""
    route = _BY_OLD[old]
    message = f"{old} is deprecated since {SINCE} and goes away in {REMOVED_IN}; use {route.new}"
    with warnings.catch_warnings():
        if route.kind in _SHOWN:
            warnings.simplefilter("always", DeprecationWarning)
        warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)


# -- command lines ---------------------------------------------------------------------------------------
def _commands():
    return importlib.import_module("bntt_snntorch.commands")


def _run_command(old: str, command: str, argv: list[str] | None = None) -> int:
    deprecated(old, stacklevel=3)
    return _commands().command_module(command).run(sys.argv[1:] if argv is None else argv)


def alias_module(name: str, module_name: str) -> None:
    """The whole body of the alias module ``name`` (``bntt_snntorch.analyze``, ...): run as a script
    (``module_name == "__main__"``) it runs its command; imported, its attributes are the command
    module's. Both warn."""
    command = _ALIAS_MODULES[name]
    if module_name == "__main__":
        sys.exit(_run_command(name, command))

    def forward(attribute: str):
        deprecated(name)
        return getattr(_commands().command_module(command), attribute)

    sys.modules[module_name].__getattr__ = forward


def old_script_route(module: str) -> int:
    """``python -m bntt_snntorch.commands.<module>``: run its command, with the warning; exit status."""
    return _run_command(f"python -m {module}", _SCRIPT_MODULES[module])


def add_old_train_flags(parser: argparse.ArgumentParser) -> None:
    """``train.py --evaluate RUN`` and the analysis flags that go with it."""
    parser.add_argument(
        "--evaluate", metavar="RUN_OR_CHECKPOINT", help=f"deprecated since {SINCE}: python -m bntt_snntorch analyze RUN"
    )
    importlib.import_module("bntt_snntorch.commands.analyze").add_analysis_args(parser, positional=False)


def old_train_route(argv: list[str]) -> int | None:
    """The exit status of ``train.py convert ...`` or ``train.py --evaluate RUN ...`` run as the commands
    that replace them; None for any other command line."""
    if argv[:1] == ["convert"]:
        return _run_command("train.py convert", "convert", argv[1:])
    if not any(a == "--evaluate" or a.startswith("--evaluate=") for a in argv):
        return None
    commands = _commands()
    args = commands.command_module("train").get_args_parser().parse_args(argv)
    deprecated("train.py --evaluate RUN", stacklevel=2)
    experiments = importlib.import_module("bntt_snntorch.experiments")
    common = importlib.import_module("bntt_snntorch.commands.common")
    options = common.options_from_args(experiments.AnalysisOptions, args)
    return common.exit_status(lambda: experiments.analyze_run(args.evaluate, options))


class OldFlagAction(argparse.Action):
    """Stores like the flag it stands for, warning that its spelling is deprecated."""

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(option_string, stacklevel=2)
        setattr(namespace, self.dest, values)


def add_old_flags(parser, flag: str, **kwargs) -> None:
    """The old spellings of ``flag`` (:data:`OLD_FLAGS`), hidden from ``--help``, storing into its dest."""
    if flag in OLD_FLAGS:
        keep = {k: v for k, v in kwargs.items() if k in ("dest", "type", "nargs", "choices", "metavar")}
        parser.add_argument(
            *OLD_FLAGS[flag], action=OldFlagAction, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **keep
        )


# -- Python names ----------------------------------------------------------------------------------------
def _temporal_norm(kind: str, num_features: int, time_steps: int, dims: int, bntt_eps: float = 1e-5):
    create_norm = importlib.import_module("bntt_snntorch.temporal_norm").create_norm
    return create_norm(kind, num_features, time_steps, dims, **({"eps": bntt_eps} if kind == "bntt" else {}))


def _analyze(run, **options) -> dict:
    experiments = importlib.import_module("bntt_snntorch.experiments")
    return experiments.analyze_run(run, experiments.AnalysisOptions(**options))


def _convert_checkpoint(model, output_dir, *, norm: int | None = None, **options) -> dict:
    experiments = importlib.import_module("bntt_snntorch.experiments")
    if norm is not None:
        options["norm_images"] = norm
    return experiments.convert_run(model, output_dir, experiments.ConversionOptions(**options))


_ATTRIBUTES: dict[tuple[str, str], Callable[[], object]] = {  # (module, old name) -> its value
    ("bntt_snntorch.commands.analyze", "analyze"): lambda: _analyze,
    ("bntt_snntorch.commands.convert", "convert_checkpoint"): lambda: _convert_checkpoint,
    ("bntt_snntorch.temporal_norm", "temporal_norm"): lambda: _temporal_norm,
    ("bntt_snntorch.temporal_norm", "NORMS"): lambda: tuple(
        importlib.import_module("bntt_snntorch.temporal_norm").list_norms()
    ),
    ("bntt_snntorch.data", "EventOptions"): lambda: importlib.import_module("bntt_snntorch.data").DataOptions,
}


def old_attribute(module: str, name: str):
    """A module's ``__getattr__``: the old name ``name`` of ``module`` (with the warning), else the usual
    AttributeError."""
    if (module, name) not in _ATTRIBUTES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    deprecated(next(r.old for r in ROUTES if r.kind == "attribute" and r.old.startswith(f"{module}.{name}")), 3)
    return _ATTRIBUTES[module, name]()


def renamed_keywords(**renames: str):
    """Decorator: the function accepts each old keyword of ``renames`` (old -> new) as the new one, warning."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    deprecated(f"{fn.__name__}(..., {old}=)")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def old_kernel_setting() -> str | None:
    """``BNTT_COMPILED_KERNELS`` (0: eager, else auto) as a ``BNTT_KERNELS`` setting, warning;
    None where it is not set."""
    if "BNTT_COMPILED_KERNELS" not in os.environ:
        return None
    deprecated("BNTT_COMPILED_KERNELS=0|1", stacklevel=3)
    return _KERNEL_SETTINGS.get(os.environ["BNTT_COMPILED_KERNELS"], "auto")
