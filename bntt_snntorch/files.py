"""Atomic file writes: the one way the package writes results (CSV, JSON, checkpoints, caches).

A reader never sees a half-written file: data goes to a temporary file beside the target,
is fsynced, then renamed over it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

_UMASK = os.umask(0o022)  # read once, at import: setting it is the only way to read it
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable, before_replace: Callable[[], None] | None = None) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync, then rename over ``path``
    (``before_replace()``, where given, runs just before the rename, the new data already on disk). The file
    gets the permissions a plain ``open`` would give it (the umask's), not the temporary file's owner-only
    ones."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))


def write_csv(path: str | os.PathLike, rows: Iterable[dict], fieldnames: list[str] | None = None) -> None:
    """Write ``rows`` (dicts) as CSV with a header, atomically; columns ``fieldnames`` or the first row's keys."""
    rows = list(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames or list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2))
