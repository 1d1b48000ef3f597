"""Atomic checkpoints, RNG state capture, and loading the newest readable checkpoint.

A run killed at any moment leaves ``last.pt`` (and the one before it,
``last.prev.pt``) intact: files are written to a temporary name, fsynced and
renamed, and ``last.pt`` is never absent once written (once the new file is on
disk, the old one is kept as ``last.prev.pt`` by a hard link, or a copy, then
the new one is renamed over it: the two names are one file only between two
renames, not for the whole save).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write


def save_checkpoint(obj: dict, path: str | os.PathLike, keep_previous: bool = False) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically; with ``keep_previous`` the old file is kept as
    ``<name>.prev.pt`` (the fallback if ``path`` is later found corrupt), ``path`` staying in place until
    the new file is renamed over it."""
    path = Path(path)
    keep = (lambda: _keep_previous(path)) if keep_previous and path.exists() else None
    atomic_write(path, lambda f: torch.save(obj, f), before_replace=keep)


def _keep_previous(path: Path) -> None:
    """Make ``<name>.prev.pt`` the file now at ``path``, leaving ``path`` in place: a hard link where the
    file system has them (made under a temporary name and renamed, so the old ``<name>.prev.pt`` stays until
    then), else an atomic copy."""
    previous = previous_path(path)
    link = previous.with_name(f".{previous.name}.link")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
        os.replace(link, previous)
    except OSError:
        link.unlink(missing_ok=True)
        with open(path, "rb") as source:
            atomic_write(previous, lambda f: shutil.copyfileobj(source, f))


def previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`."""
    return torch.load(path, map_location=map_location, weights_only=False)


#: What reading a checkpoint that cannot be read or unpickled raises (a truncated or corrupt file): the file
#: system's and pickle's errors, and the zip reader's RuntimeError ("PytorchStreamReader failed ..."). Any other
#: error (a bug) propagates.
UNREADABLE = (OSError, EOFError, RuntimeError, pickle.UnpicklingError)


def load_latest_good(path: str | os.PathLike, map_location="cpu") -> tuple[dict, Path]:
    """Load ``path``; if it cannot be read or unpickled (truncated, corrupt: :data:`UNREADABLE`), warn in one line
    with the cause and load ``<name>.prev.pt``."""
    path = Path(path)
    try:
        return load_checkpoint(path, map_location), path
    except UNREADABLE as err:
        fallback = previous_path(path)
        if not fallback.exists():
            raise
        cause = " ".join(f"{type(err).__name__}: {err}".split())
        warnings.warn(f"checkpoint {path} is unreadable ({cause}); resuming from {fallback}", stacklevel=2)
        return load_checkpoint(fallback, map_location), fallback


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
