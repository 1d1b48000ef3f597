"""Building C source into a shared library the kernels load with ctypes: the system's C compiler, the vector
instructions of torch's CPU capability, torch's own OpenMP runtime, and a cache folder beside TorchInductor's
(one library per source and flags, written atomically). :mod:`.c_bntt` (the BNTT loops) and :mod:`.c_pool`
(average pooling) build theirs here; a failure is a :class:`~.fallback.CBuildError`, which the kernels'
fallback rule turns into the torch path."""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import torch

from .fallback import CBuildError


def _isa_flags() -> list[str]:
    """Vector instructions for torch's CPU capability (not -march=native: a cache folder may be shared)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"]
    if capability == "AVX2":
        return ["-mavx2", "-mfma"]
    return []


def _torch_libgomp() -> str | None:
    """The OpenMP runtime torch loaded (its own copy where the wheel ships one), so the loops share its threads."""
    for line in Path("/proc/self/maps").read_text().splitlines() if Path("/proc/self/maps").exists() else ():
        path = line.split()[-1]
        if "libgomp" in Path(path).name:
            return path
    return None


def cache_folder() -> Path:
    """``bntt_snntorch_c/`` in TorchInductor's cache folder (``TORCHINDUCTOR_CACHE_DIR``)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "bntt_snntorch_c"


def compiler() -> str:
    """The C compiler: ``$CC``, else ``cc``."""
    return os.environ.get("CC", "cc")


def build(text: str) -> ctypes.CDLL:
    """Compile C source ``text`` into a shared library in :func:`cache_folder` (atomically; a library of the
    same source and flags is reused) and load it; :class:`~.fallback.CBuildError` where that fails."""
    gomp = _torch_libgomp()
    # -ffp-contract=off: no fused multiply-adds, each product rounded as torch's ops round it;
    # -fno-trapping-math: comparisons may be if-converted, so the loops vectorise on AVX2 as on AVX-512
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC",
             *_isa_flags()]  # fmt: skip
    digest = hashlib.sha256("\n".join([text, *flags, str(gomp)]).encode()).hexdigest()[:20]
    target = cache_folder() / f"bntt_{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, out = Path(tmp) / "bntt.c", Path(tmp) / "bntt.so"
            src.write_text(text)
            link = [gomp] if gomp else ["-lgomp"]
            command = [compiler(), *flags, str(src), "-o", str(out), *link, "-lm"]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise CBuildError(f"{compiler()} could not run: {err}") from None
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise CBuildError(f"{compiler()} failed (exit {done.returncode}): {last}")
            os.replace(out, target)
    return ctypes.CDLL(str(target))
