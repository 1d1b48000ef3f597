"""Every route kept only so that 0.1 code, command lines and environments keep working: the one list of them.

:data:`ROUTES` lists each old route, what replaces it and its kind; all go away in :data:`REMOVED_IN`. Each use
warns with a ``DeprecationWarning`` naming the replacement (:func:`deprecated`; the command-line routes show it on
the terminal too). This module holds the list and the routes of the library tier: old attribute names
(:func:`old_attribute`, which each module's ``__getattr__`` calls with its own old names), old keywords
(:func:`renamed_keywords`), old flag spellings (:data:`OLD_FLAGS`, :func:`add_old_flags`), the old kernel variable
(:func:`old_kernel_setting`) and the two old call forms of the step-mode layers (:func:`deprecated`). The routes
that run a command or an experiment (the five alias modules at the package root, the command modules run as
scripts, ``train.py convert`` / ``--evaluate``, the old names of the command modules) live in the commands tier,
:mod:`bntt_snntorch.commands.compat`. Removing 0.1 compatibility is deleting both, the alias modules and the
calls.

This module imports nothing of the package, so every tier can use it.
"""

from __future__ import annotations

import argparse
import functools
import os
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


ALIAS_MODULES = {  # the package-root alias modules -> their commands
    "bntt_snntorch.analyze": "analyze",
    "bntt_snntorch.compare_norms": "compare-norms",
    "bntt_snntorch.compare_coding": "compare-coding",
    "bntt_snntorch.convert": "convert",
    "bntt_snntorch.compare_conversion": "compare-conversion",
}
SCRIPT_MODULES = {  # command modules once run as scripts -> their commands
    "bntt_snntorch.commands.train": "train",
    "bntt_snntorch.commands.analyze": "analyze",
    "bntt_snntorch.commands.convert": "convert",
    "bntt_snntorch.commands.compare_norms": "compare-norms",
    "bntt_snntorch.commands.compare_coding": "compare-coding",
    "bntt_snntorch.commands.compare_conversion": "compare-conversion",
}
OLD_FLAGS: dict[str, tuple[str, ...]] = {"--pgd-iterations": ("--pgd-steps", "--pgd_steps")}
_KERNEL_SETTINGS = {"0": "eager"}  # 1 (compile): auto, the compiled steps being retired

ROUTES: tuple[Route, ...] = (
    *(
        Route(module, f"python -m bntt_snntorch {command} (in Python: bntt_snntorch.commands)", "module")
        for module, command in ALIAS_MODULES.items()
    ),
    *(Route(f"python -m {module}", f"python -m bntt_snntorch {c}", "script") for module, c in SCRIPT_MODULES.items()),
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


# -- command-line flags ---------------------------------------------------------------------------------
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
def old_attribute(module: str, name: str, values: dict[str, Callable[[], object]]):
    """A module's ``__getattr__``: the old name ``name`` of ``module`` (``values``: each old name of the module ->
    its value, made on use) with the warning, else the usual AttributeError."""
    if name not in values:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    deprecated(next(r.old for r in ROUTES if r.kind == "attribute" and r.old.startswith(f"{module}.{name}")), 3)
    return values[name]()


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
