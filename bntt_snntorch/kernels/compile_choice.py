"""Which path ``BNTT_KERNELS=auto`` runs a CPU layer's fused BNTT steps on: measured on this machine.

Whether TorchInductor's compiled steps or the C loops (:mod:`.c_bntt`) beat the eager ones depends on
the CPU (measured: compiled 1.5x faster on one AVX2 machine at a VGG9 layer, no gain on another), so
auto decides from a measurement here, never from a size threshold read off another CPU. For a layer it
could compile (CPU, float32 / bfloat16, scalar leak and threshold) it times calls of the paths at the
layer's real shape ``(T, B, C, ...)`` — forward and backward where the call records a graph, forward
alone where it does not — after a warm-up each (the compiled warm-up, compile included, is timed too).
The eager path is timed first, then the C loops where they apply (their build takes about a second,
once per machine); each faster path must win by at least :data:`MIN_GAIN`. A layer too small for a
TorchInductor compile to pay back over the faster of the two (:func:`worth_measuring`) is not compiled.

A measurement is taken once per (CPU capability, torch version, dtype, shape, training or not) and
kept in ``bntt_snntorch_compile_choices.json`` beside TorchInductor's compile cache (which keeps the
compiled code), so later runs on this machine reuse both. :func:`~bntt_snntorch.kernels.explain`
shows the measured times behind each layer's choice.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from ..files import write_json

#: The compiled steps are chosen only where they took at most (1 - MIN_GAIN) of the eager time.
MIN_GAIN = 0.05
#: The best compiled-over-eager saving measured so far (64 %, a VGG9 8x8 layer at T=10, B=16, training
#: calls, the whole sequence as one compiled loop; 35 % one compiled step a call): the most a compile
#: could save a call, used before compiling anything.
BEST_SAVING = 0.64
#: A compile must pay back within this many batches (calls of a layer's node under BPTT; the online
#: rules' local node is called once per chunk of steps, several times a batch) to be worth measuring:
#: a third of a CIFAR-10 epoch at batch 16, one and a half default digits runs.
PAYBACK_CALLS = 1000
#: The compile time a time step assumed until one has been measured on this machine: the compiled loop
#: unrolls the steps, and a T=10 sequence of a conv layer took 43-57 s (first call, compile included) on
#: the 2-core AVX-512 machine, with or without a warm cache (T=2: 4-9 s, T=64: 178 s).
ASSUMED_COMPILE_SECONDS_PER_STEP = 5.0
TIMED_CALLS = 3
#: What the measured paths are (part of every measurement's key, so that measurements of earlier paths are
#: not reused): the whole sequence as one compiled loop (before it: one step a call), and the C loops.
COMPILED_PATH = "sequence+c"


@dataclass(frozen=True)
class Measurement:
    """Seconds a call of a layer took here: ``eager_s``, ``compiled_s`` (None if not measured) and
    ``compile_s`` (the compiled path's first call, compile included; None if not measured), for a
    sequence of ``num_steps`` steps (None in measurements saved before it was kept); ``c_s``: the C
    loops' call (None where they do not apply or could not be built)."""

    eager_s: float
    compiled_s: float | None = None
    compile_s: float | None = None
    num_steps: int | None = None
    c_s: float | None = None

    @property
    def uncompiled(self) -> tuple[str, float]:
        """``(path, seconds)`` of the faster path without a TorchInductor compile: the C loops where they
        won by at least :data:`MIN_GAIN`, else the eager steps."""
        if self.c_s is not None and self.c_s <= (1 - MIN_GAIN) * self.eager_s:
            return "bntt-c", self.c_s
        return "bntt-eager", self.eager_s

    @property
    def compile(self) -> bool:
        """Whether the compiled steps won by at least :data:`MIN_GAIN` over the faster uncompiled path."""
        return self.compiled_s is not None and self.compiled_s <= (1 - MIN_GAIN) * self.uncompiled[1]

    @property
    def path(self) -> str:
        """The path these timings choose."""
        return "bntt-compiled" if self.compile else self.uncompiled[0]

    def __str__(self) -> str:
        times = f"eager {self.eager_s * 1e3:.1f} ms" + ("" if self.c_s is None else f", C {self.c_s * 1e3:.1f} ms")
        if self.compiled_s is None:
            return f"measured here: {times} a call, too little for a compile to pay back"
        return (
            f"measured here: {times}, compiled {self.compiled_s * 1e3:.1f} ms a call "
            f"(first call {self.compile_s:.1f} s)"
        )


def worth_measuring(eager_s: float, compile_s: float, calls_per_batch: int = 1) -> bool:
    """Whether a layer whose eager call takes ``eager_s``, called ``calls_per_batch`` times a batch, could
    pay back a compile of ``compile_s`` within :data:`PAYBACK_CALLS` batches, saving at most
    :data:`BEST_SAVING` of each call."""
    return eager_s * calls_per_batch * BEST_SAVING * PAYBACK_CALLS >= compile_s


def expected_compile_seconds(num_steps: int) -> float:
    """What compiling a sequence of ``num_steps`` steps is expected to cost here: ``num_steps`` times the
    median compile time a step of the first calls measured on this machine that compiled (over a second:
    a shorter one reused code compiled before), else :data:`ASSUMED_COMPILE_SECONDS_PER_STEP` a step."""
    known = [
        m.compile_s / m.num_steps
        for m in _CHOICES.values()
        if m.compile_s is not None and m.compile_s > 1.0 and m.num_steps
    ]
    return num_steps * (statistics.median(known) if known else ASSUMED_COMPILE_SECONDS_PER_STEP)


def choices_file() -> Path:
    """``bntt_snntorch_compile_choices.json`` in TorchInductor's cache folder (``TORCHINDUCTOR_CACHE_DIR``)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / "bntt_snntorch_compile_choices.json"


def key(x: torch.Tensor, grad: bool, calls_per_batch: int = 1) -> str:
    """What a measurement holds for: this CPU, this torch, the dtype, the shape, training or not (and the
    calls a batch where there are several)."""
    shape, mode = "x".join(map(str, x.shape)), "train" if grad else "eval"
    calls = "" if calls_per_batch == 1 else f"|{calls_per_batch} calls a batch"
    machine = f"{torch.backends.cpu.get_cpu_capability()}|torch {torch.__version__}|{COMPILED_PATH}"
    return f"{machine}|{x.dtype}|{shape}|{mode}{calls}"


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


def measured(x: torch.Tensor, p, grad: bool, calls_per_batch: int = 1) -> Measurement | None:
    """The measurement behind auto's choice for a layer fed ``x`` ``(T, B, ...)`` with neuron
    parameters ``p``, called ``calls_per_batch`` times a batch: from this process, else from the file,
    else taken now (:func:`measure_layer`) and saved. None while
    torch.compile traces the model and no measurement is kept (nothing is timed inside a trace)."""
    k = key(x, grad, calls_per_batch)
    if k not in _CHOICES:
        _CHOICES.update(_load())
    if k not in _CHOICES and torch.compiler.is_compiling():
        return None
    if k not in _CHOICES:
        _CHOICES[k] = measure_layer(x, p, grad, calls_per_batch)
        path = choices_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**{n: asdict(m) for n, m in _load().items()}, k: asdict(_CHOICES[k])})
    return _CHOICES[k]


def forget() -> None:
    """Forget this process's measurements (the file stays)."""
    _CHOICES.clear()


def _kept(t: torch.Tensor) -> torch.Tensor:
    return t


def measure_layer(x: torch.Tensor, p, grad: bool, calls_per_batch: int = 1) -> Measurement:
    """Time the fused BNTT node on random input of ``x``'s shape and dtype, eager, the C loops (where
    they apply), then (where :func:`worth_measuring` at ``calls_per_batch``) compiled; a build or compile
    that fails here counts as no gain (the failure is recorded as every fallback is). The online rules'
    local node runs the same step kernels, so its chunks are timed on this node too. The timed graphs ignore
    the caller's saved-tensor hooks (a profiler of the model's first call would count them, an offloading
    hook would move them)."""
    from . import c_bntt
    from .bntt_scan import BNTTNorm, bntt_leaky_scan_cpu
    from .fallback import FALLBACKS, fallback_errors, record_failure

    T, C = x.shape[0], x.shape[2]
    p = p._replace(beta=torch.as_tensor(p.beta).detach(), threshold=torch.as_tensor(p.threshold).detach())
    sample = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0)).requires_grad_(grad)
    weight = torch.ones(T, C).requires_grad_(grad)
    norm = BNTTNorm(weight, torch.zeros(T, C), torch.ones(T, C), 1e-4, 1.0, grad)

    def call(path):  # the graphs keep their tensors as they are, whatever saved-tensor hooks the caller set
        start = time.perf_counter()
        with torch.enable_grad() if grad else torch.no_grad(), torch.autograd.graph.saved_tensors_hooks(_kept, _kept):
            spikes = bntt_leaky_scan_cpu(sample, norm, p, path)
            if grad:
                torch.autograd.grad(spikes, (sample, weight), torch.ones_like(spikes))
        return time.perf_counter() - start

    def timed(path):
        first = call(path)
        return statistics.median(call(path) for _ in range(TIMED_CALLS)), first

    eager_s, _ = timed("bntt-eager")
    c_s = None
    if c_bntt.supports(x, p) is None and "bntt-c" not in FALLBACKS:
        try:
            c_s, _ = timed("bntt-c")
        except fallback_errors() as err:
            record_failure("bntt-c", err, "the C loops' measurement", warn=False)  # explain shows why
    uncompiled = Measurement(eager_s, num_steps=T, c_s=c_s)
    if not worth_measuring(uncompiled.uncompiled[1], expected_compile_seconds(T), calls_per_batch):
        return uncompiled
    try:
        compiled_s, first = timed("bntt-compiled")
    except fallback_errors() as err:
        record_failure("bntt-compiled", err, "the compile measurement")
        return uncompiled
    return Measurement(eager_s, compiled_s, first, T, c_s)
