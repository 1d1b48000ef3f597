"""One registry mechanism for every kind of named part: models, data sets, neurons, norms.

Each kind keeps a :class:`Registry` of entries (the kind's own info record, with its
factory); ``@register_<kind>`` adds one, ``list_<kind>s()`` names them and
``create_<kind>(name, ...)`` builds one. Registering a name twice replaces the first
entry with a warning (as timm does); an unknown name is a one-line error listing the
known ones.
"""

from __future__ import annotations

import warnings
from typing import Generic, TypeVar

Entry = TypeVar("Entry")


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
        """The entry of ``name``; an unknown name is a ValueError listing the known ones."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """The registered names in the order they were registered."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
