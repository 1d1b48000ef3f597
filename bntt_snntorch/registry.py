"""One registry mechanism for every kind of named part: models, data sets, neurons, norms.

Each kind keeps a :class:`Registry` of entries (the kind's own info record, with its
factory); ``@register_<kind>`` adds one, ``list_<kind>s()`` names them and
``create_<kind>(name, ...)`` builds one. Registering a name twice replaces the first
entry with a warning (as timm does); an unknown name is a one-line error listing the
known ones.

Plug-ins: an installed distribution adds its own neurons, norms, models and data sets through the
entry-point group ``bntt_snntorch.plugins``; each entry point names a module whose import
registers its parts (``[project.entry-points."bntt_snntorch.plugins"] mine = "my_package.parts"``).
:func:`load_plugins` imports them, once a process; every registry's listing and lookup calls it, so
the command lines (``train.py --neuron NAME``, ``--help``), ``create_*`` and the ``list_*`` see them.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from typing import Generic, TypeVar

Entry = TypeVar("Entry")

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


class Registry(Generic[Entry]):
    """Named entries of one ``kind`` ("model", "dataset", "neuron", "norm")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

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
