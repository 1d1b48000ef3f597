"""The package's C kernels (``kernels/csrc/*.c``) built into shared libraries and bound through one typed table.

:func:`build` compiles C files of ``csrc/`` with the headers a kernel generates (``definition.h``: the
definition's formulas for one variant, :mod:`.c_definition`) using the system's C compiler, the vector
instructions of torch's CPU capability and torch's own OpenMP runtime, into a cache folder beside
TorchInductor's (one library per source, headers and flags, written atomically); a failure is a
:class:`CBuildError`, which the kernels' fallback rule turns into the torch path.

:data:`SIGNATURES` is every C function's parameter list, name and C type, in order (a test reads the C files
and holds them to it); :class:`Kernels` binds a library's functions by it and checks each call's arguments
(dtype, contiguity, device of every tensor), so that a call with a wrong tensor is an error in Python, not
memory written out of bounds. Every function returns 0, or 1 where an allocation failed (a MemoryError here).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch


class CBuildError(RuntimeError):
    """C loops (:mod:`.c_bntt`, :mod:`.c_pool`) cannot be built here: no C compiler, or it failed (the fallback
    rule, :mod:`.fallback`, turns it into the torch path)."""


#: The C files, and the headers they share.
CSRC = Path(__file__).parent / "csrc"

_DIMS = (("T", "int64_t"), ("B", "int64_t"), ("C", "int64_t"), ("L", "int64_t"))
_FORWARD = (("x", "const float*"), ("k", "const float*"), ("shift", "const float*"), ("m0", "const float*?"),
            ("spk", "float*"), ("mem_last", "float*?"), ("params", "const float*"), *_DIMS)  # fmt: skip
_FORWARD_STATS = (
    ("x", "const float*"), ("w", "const float*?"), ("eps", "double"), ("scale", "float"), ("m0", "const float*?"),
    ("spk", "float*"), ("mem_last", "float*?"), ("mean", "float*"), ("var", "float*"), ("rstd", "float*"),
    ("k", "float*"), ("shift", "float*"), ("rm", "float*?"), ("rv", "float*?"), ("counts", "int64_t*?"),
    ("momentum", "float"), ("unbias", "float"), ("params", "const float*"), *_DIMS,
)  # fmt: skip
_BACKWARD = (
    ("gs", "const float*"), ("x", "const float*"), ("k", "const float*"), ("shift", "const float*"),
    ("mean", "const float*"), ("rstd", "const float*"), ("m0", "const float*?"), ("dx", "float*"),
    ("sum_dy", "float*"), ("sum_dy_xhat", "float*"), ("part", "float*"), ("params", "const float*"), *_DIMS,
)  # fmt: skip
_STATS = (("x", "const float*"), ("mean", "float*"), ("var", "float*"), *_DIMS)
_POOL = (("P", "int64_t"), ("H", "int64_t"), ("W", "int64_t"))

#: Every C function the kernels call: its parameters' names and C types in order (``?``: may be NULL, None here).
SIGNATURES: dict[str, tuple[tuple[str, str], ...]] = {
    "bntt_stats": _STATS,
    "bntt_stats_flat": _STATS,
    "bntt_forward": _FORWARD,
    "bntt_forward_flat": _FORWARD,
    "bntt_forward_stats": _FORWARD_STATS,
    "bntt_forward_stats_flat": _FORWARD_STATS,
    "bntt_backward": _BACKWARD,
    "bntt_backward_flat": _BACKWARD,
    "avg_pool_2x2": (("x", "const float*"), ("y", "float*"), *_POOL),
    "avg_pool_2x2_backward": (("g", "const float*"), ("dx", "float*"), *_POOL),
}

_SCALARS = {"float": (ctypes.c_float, float), "double": (ctypes.c_double, float), "int64_t": (ctypes.c_int64, int)}
_POINTEES = {"float": torch.float32, "int64_t": torch.int64}


class _Parameter(NamedTuple):
    """One parameter of a C function as the binding checks it: ``dtype`` for a pointer (the tensor's; None for a
    scalar), ``nullable`` for a pointer that may be NULL, ``scalar`` the Python type a scalar is converted to."""

    name: str
    dtype: torch.dtype | None
    nullable: bool
    scalar: type | None

    @classmethod
    def of(cls, name: str, ctype: str) -> _Parameter:
        if "*" not in ctype:
            return cls(name, None, False, _SCALARS[ctype][1])
        return cls(name, _POINTEES[ctype.removeprefix("const ").rstrip("*?")], ctype.endswith("?"), None)


class Kernels:
    """A built library's functions of :data:`SIGNATURES`, each called by name with keyword arguments: tensors for
    pointers (float32 / int64, contiguous, on the CPU; None where the type allows NULL), numbers for scalars."""

    def __init__(self, library: ctypes.CDLL, names: Sequence[str]):
        self._functions = {}
        for name in names:
            function = getattr(library, name)
            function.argtypes = [ctypes.c_void_p if "*" in t else _SCALARS[t][0] for _, t in SIGNATURES[name]]
            function.restype = ctypes.c_int
            self._functions[name] = function, tuple(_Parameter.of(*parameter) for parameter in SIGNATURES[name])

    def __call__(self, name: str, **arguments) -> None:
        function, parameters = self._functions[name]
        if len(arguments) != len(parameters):
            unexpected = sorted(set(arguments) - {p.name for p in parameters})
            raise TypeError(
                f"{name}() got unexpected arguments {unexpected}"
                if unexpected
                else f"{name}() missing arguments {sorted({p.name for p in parameters} - set(arguments))}"
            )
        values = []
        for parameter in parameters:  # one loop, no call an argument: this runs for every kernel call
            value = arguments[parameter.name]
            if parameter.dtype is None:
                values.append(parameter.scalar(value))
            elif value is None:
                if not parameter.nullable:
                    raise ValueError(f"{name}(): {parameter.name} may not be None")
                values.append(None)
            elif value.dtype is parameter.dtype and value.is_cpu and value.is_contiguous():
                values.append(value.data_ptr())
            else:
                raise ValueError(
                    f"{name}(): expected {parameter.name} a contiguous {parameter.dtype} CPU tensor, got {value.dtype} "
                    f"on {value.device.type}{'' if value.is_contiguous() else ', not contiguous'}"
                )
        if function(*values) != 0:
            raise MemoryError(f"the C loops' {name} could not allocate their working memory: free memory or use a "
                              "smaller batch (BNTT_KERNELS=eager runs without them)")  # fmt: skip


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


def build(sources: Sequence[str], headers: Mapping[str, str] | None = None) -> ctypes.CDLL:
    """Compile the C files ``sources`` (names in :data:`CSRC`) with the generated ``headers`` (file name -> text,
    found before ``csrc/``'s own) into a shared library in :func:`cache_folder` (atomically; a library of the same
    sources, headers and flags is reused) and load it; :class:`CBuildError` where that fails."""
    headers = dict(headers or {})
    gomp = _torch_libgomp()
    # -ffp-contract=off: no fused multiply-adds, each product rounded as torch's ops round it;
    # -fno-trapping-math: comparisons may be if-converted, so the loops vectorise on AVX2 as on AVX-512
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC",
             *_isa_flags()]  # fmt: skip
    texts = [(CSRC / name).read_text() for name in sources]
    shared = [p.read_text() for p in sorted(CSRC.glob("*.h"))]
    digest = hashlib.sha256("\n".join([*texts, *shared, *map(repr, sorted(headers.items())), *flags, str(gomp)])
                            .encode()).hexdigest()[:20]  # fmt: skip
    target = cache_folder() / f"bntt_{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            for name, text in headers.items():
                (Path(tmp) / name).write_text(text)
            out = Path(tmp) / "kernels.so"
            link = [gomp] if gomp else ["-lgomp"]
            command = [compiler(), *flags, f"-I{tmp}", f"-I{CSRC}", *(str(CSRC / s) for s in sources), "-o", str(out),
                       *link, "-lm"]  # fmt: skip
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise CBuildError(f"{compiler()} could not run: {err}") from None
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise CBuildError(f"{compiler()} failed (exit {done.returncode}): {last}")
            os.replace(out, target)
    return ctypes.CDLL(str(target))
