"""One registry mechanism for every kind of named part: models, data sets, neurons, norms.

Each kind keeps a :class:`Registry` of entries: a :class:`RegistryEntry` subclass whose named
fields are the kind's metadata (a model's ``ann``, a norm's ``per_step_statistics``, ...).
:meth:`Registry.register` is the one decorator factory (``@register_<kind>`` is it, bound to the
kind), :meth:`Registry.get` the one lookup (``<kind>_info``) and :meth:`Registry.names` the one
listing (``list_<kind>s()``); ``create_<kind>(name, ...)`` builds one. Registering a name twice
replaces the first entry with a warning (as timm does); an unknown name is a one-line error
listing the known ones.

Plug-ins: an installed distribution adds its own neurons, norms, models and data sets through the
entry-point group ``bntt_snntorch.plugins``; each entry point names a module whose import
registers its parts (``[project.entry-points."bntt_snntorch.plugins"] mine = "my_package.parts"``).
:func:`load_plugins` imports them, once a process; every registry's listing and lookup calls it, so
the command lines (``train.py --neuron NAME``, ``--help``), ``create_*`` and the ``list_*`` see them.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

PLUGIN_GROUP = "bntt_snntorch.plugins"
_plugins: list[str] | None = None  # the entry points loaded, once loading started


def load_plugins() -> list[str]:
    """Import the module of every entry point in the group ``bntt_snntorch.plugins`` (once a process;
    later calls return the same list). A plug-in that fails to import is skipped with a one-line
    warning naming it. Returns the names of the entry points loaded."""
    global _plugins
    if _plugins is not None:
        return _plugins
    _plugins = []
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except Exception as err:  # a broken plug-in must not stop the built-in parts
            warnings.warn(
                f"bntt_snntorch plug-in {entry.name!r} ({entry.value}) failed to import and is skipped: "
                f"{type(err).__name__}: {' '.join(str(err).split())}",
                stacklevel=2,
            )
            continue
        _plugins.append(entry.name)
    return _plugins


@dataclass(frozen=True, kw_only=True)
class RegistryEntry:
    """What every registered part has: its ``name``, the ``factory`` that builds it and a one-line
    ``description`` (the first line of the factory's docstring). Kinds add their metadata as fields."""

    name: str
    factory: Callable[..., Any]
    description: str = ""


Entry = TypeVar("Entry", bound=RegistryEntry)


class Registry(Generic[Entry]):
    """Named entries of one ``kind`` ("model", "dataset", "neuron", "norm"), each an ``entry_type``."""

    def __init__(self, kind: str, entry_type: type[Entry]):
        self.kind = kind
        self.entry_type = entry_type
        self._entries: dict[str, Entry] = {}

    def register(self, fn: Callable | None = None, /, *, name: str | None = None, **metadata):
        """Decorator: register ``fn`` as ``name`` (default: its function name) with the kind's
        ``metadata`` fields. ``@register``, ``@register(field=value)`` and ``register(fn, ...)`` all work;
        returns ``fn`` unchanged."""

        def decorate(factory: Callable) -> Callable:
            doc = (factory.__doc__ or "").strip().splitlines()
            key = name or factory.__name__
            self.add(key, self.entry_type(name=key, factory=factory, description=doc[0] if doc else "", **metadata))
            return factory

        return decorate if fn is None else decorate(fn)

    def add(self, name: str, entry: Entry) -> None:
        """Register ``entry`` as ``name`` (a second registration replaces the first, with a warning)."""
        if name in self._entries:
            message = f"{self.kind} {name!r} was registered already; the new registration replaces it"
            warnings.warn(message, stacklevel=3)
        self._entries[name] = entry

    def get(self, name: str) -> Entry:
        """The entry of ``name`` (plug-ins loaded first); an unknown name is a ValueError listing the known ones."""
        load_plugins()
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names (plug-ins loaded first), sorted."""
        load_plugins()
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The registered names (plug-ins loaded first) in the order they were registered."""
        load_plugins()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries
