"""Which path ``BNTT_KERNELS=auto`` runs a CPU layer's fused BNTT block on: measured on this machine.

Whether the C loops (:mod:`.c_bntt`) beat the eager steps depends on the CPU and the layer's shape, so auto
decides from a measurement here, never from a size threshold read off another CPU. For a layer the C loops can
run (float32 CPU input, a scalar leak and threshold) it times calls of both paths at the layer's real shape
``(T, B, C, ...)`` — forward and backward where the call records a graph, forward alone where it does not —
after a warm-up each, the eager path first; the C loops must win by at least :data:`MIN_GAIN` (their build takes
about a second, once per machine; a build that fails counts as no gain).

A measurement is taken once per (CPU capability, torch version, dtype, shape, training or not) and kept in
``bntt_snntorch_kernel_choices.json`` beside TorchInductor's cache (where the C libraries are kept too), so later
runs on this machine reuse it. :func:`~bntt_snntorch.kernels.explain` shows the measured times behind each
layer's choice. (It also timed TorchInductor-compiled steps once; they were retired: the C loops beat
them at every layer measured, ``benchmarks/results/auto-vs-eager-*.md``.)
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ..files import write_json

#: The C loops are chosen only where they took at most (1 - MIN_GAIN) of the eager time.
MIN_GAIN = 0.05
TIMED_CALLS = 3
#: What the measured paths are (part of every measurement's key, so that measurements of other paths are not
#: reused): the eager steps and the C loops.
MEASURED_PATHS = "eager+c"


@dataclass(frozen=True)
class Measurement:
    """Seconds a call of a layer took here: ``eager_s`` and ``c_s`` (the C loops; None where they do not apply
    or could not be built), for a sequence of ``num_steps`` steps."""

    eager_s: float
    c_s: float | None = None
    num_steps: int | None = None

    @property
    def path(self) -> str:
        """The path these timings choose: the C loops where they won by at least :data:`MIN_GAIN`."""
        return "bntt-c" if self.c_s is not None and self.c_s <= (1 - MIN_GAIN) * self.eager_s else "bntt-eager"

    def __str__(self) -> str:
        times = f"eager {self.eager_s * 1e3:.1f} ms" + ("" if self.c_s is None else f", C {self.c_s * 1e3:.1f} ms")
        return f"measured here: {times} a call"


def choices_file() -> Path:
    """``bntt_snntorch_kernel_choices.json`` in TorchInductor's cache folder (``TORCHINDUCTOR_CACHE_DIR``)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "bntt_snntorch_kernel_choices.json"


def key(shape, dtype: torch.dtype, grad: bool) -> str:
    """What a measurement holds for: this CPU, this torch, the dtype, the shape, training or not."""
    machine = f"{torch.backends.cpu.get_cpu_capability()}|torch {torch.__version__}|{MEASURED_PATHS}"
    return f"{machine}|{dtype}|{'x'.join(map(str, shape))}|{'train' if grad else 'eval'}"


_CHOICES: dict[str, Measurement] = {}


def _load() -> dict[str, Measurement]:
    path = choices_file()
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    known = {f.name for f in fields(Measurement)}
    # fields of another version of this file's writer are left out, so that no version fails to read it
    return {k: Measurement(**{f: x for f, x in v.items() if f in known}) for k, v in saved.items() if _readable(v)}


def _readable(saved) -> bool:
    return isinstance(saved, dict) and isinstance(saved.get("eager_s"), (int, float))


def measured(shape, dtype: torch.dtype, p, grad: bool) -> Measurement | None:
    """The measurement behind auto's choice for a layer fed ``(T, B, ...)`` sequences of ``shape`` and ``dtype`` with
    neuron parameters ``p``: from this process, else from the file, else taken now (:func:`measure_layer`) and
    saved. None where it is not kept and ``p`` is None (torch.compile traces: nothing is timed inside a trace)."""
    k = key(shape, dtype, grad)
    if k not in _CHOICES:
        _CHOICES.update(_load())
    if k not in _CHOICES and p is None:
        return None
    if k not in _CHOICES:
        _CHOICES[k] = measure_layer(torch.empty(shape, dtype=dtype), p, grad)
        path = choices_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**{n: asdict(m) for n, m in _load().items()}, k: asdict(_CHOICES[k])})
    return _CHOICES[k]


def forget() -> None:
    """Forget this process's measurements (the file stays)."""
    _CHOICES.clear()


def _kept(t: torch.Tensor) -> torch.Tensor:
    return t


def measure_layer(x: torch.Tensor, p, grad: bool) -> Measurement:
    """Time the fused block on random input of ``x``'s shape and dtype, eager, then on the C loops (where they
    apply); a build that fails here counts as no gain (the failure is recorded as every fallback is). The timed
    graphs ignore the caller's saved-tensor hooks (a profiler of the model's first call would count them, an
    offloading hook would move them)."""
    from ..bntt import BatchNormTT1d, BatchNormTT2d
    from .backends import BLOCK_BACKENDS
    from .fallback import FALLBACKS, fallback_errors, record_failure
    from .fused_block import fused_block

    T, C = x.shape[0], x.shape[2]
    p = p._replace(beta=torch.as_tensor(p.beta).detach(), threshold=torch.as_tensor(p.threshold).detach())
    sample = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0)).requires_grad_(grad)
    norm = (BatchNormTT2d if x.dim() == 5 else BatchNormTT1d)(C, T).train(grad)

    def call(path):  # the graphs keep their tensors as they are, whatever saved-tensor hooks the caller set
        start = time.perf_counter()
        with torch.enable_grad() if grad else torch.no_grad(), torch.autograd.graph.saved_tensors_hooks(_kept, _kept):
            spikes = fused_block(path, sample, norm, p)[0]
            if grad:
                torch.autograd.grad(spikes, (sample, *norm.parameters()), torch.ones_like(spikes))
        return time.perf_counter() - start

    def timed(path):
        call(path)
        return statistics.median(call(path) for _ in range(TIMED_CALLS))

    eager_s = timed("bntt-eager")
    c_s = None
    scalar = p.beta.numel() == 1 and p.threshold.numel() == 1
    if BLOCK_BACKENDS["bntt-c"].supports(x.dtype, x.device.type, scalar) is None and "bntt-c" not in FALLBACKS:
        try:
            c_s = timed("bntt-c")
        except fallback_errors() as err:
            record_failure("bntt-c", err, "the C loops' measurement", warn=False)  # explain shows why
    return Measurement(eager_s, c_s, T)
