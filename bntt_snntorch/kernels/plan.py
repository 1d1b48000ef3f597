"""The one place a layer's path is decided: :func:`choose_plan` returns a named :class:`Plan`, with its reason.

Every layer asks it, once a call, with what decides the path: ``Leaky.multi_step`` for a scan,
``SpikingBlock`` for a ``synapse -> norm -> neuron`` block (BPTT and the online rules alike), ``TimeDistributed``
for average pooling. The facts it weighs: the device, the dtype, one step's size, the layer's ``backend``, the
neuron and the norm, the kernels that failed before in this process, and the one environment override,
``BNTT_KERNELS``:

* ``auto`` (default): Triton on CUDA; on CPU the eager steps or the C loops (:mod:`.c_bntt`), whichever a
  measurement on this machine, at the layer's shape, found faster (:mod:`.auto_choice`: taken once, kept
  beside TorchInductor's cache);
* ``eager``: never Triton, no C loops (the torch kernels, average pooling's included);
* ``c``: the C loops on CPU wherever they apply (float32 convolution and linear blocks, scalar leak and threshold);
* ``triton``: Triton wherever it can run (on CPU under ``TRITON_INTERPRET=1``).

Every setting but ``eager`` pools 2x2 windows of float32 CPU maps on C loops (:mod:`.pooling`, :mod:`.c_pool`:
bit for bit torch's kernel, several times faster).

The fused block's paths are the entries of the table :data:`~.backends.BLOCK_BACKENDS`; a plan names one, and
the layer runs it (:func:`~.fused_block.fused_block`). One fallback rule (:func:`attempt`): only the errors that
mean "this backend cannot compile or launch here" (:func:`fallback_errors`: a missing module or C compiler,
Triton's compilation, PTX-assembler and out-of-resources errors) fall back, once, to the entry's fallback with
one warning naming the layer, the path, the cause and ``BNTT_KERNELS``; the failure is recorded in
:data:`FALLBACKS` (cleared by :func:`clear_fallbacks`) and later plans take the fallback and say why. Any other
exception is a bug and propagates. :func:`explain` runs a model once and reports every layer's plan and the path
it actually took.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from .._compat import old_kernel_setting
from ..surrogate import Surrogate
from . import fallback
from .backends import BLOCK_BACKENDS
from .fallback import (  # noqa: F401  (re-exported: the fallback rule is part of the plan's API)
    FALLBACK_PATH,
    FALLBACKS,
    attempt,
    clear_fallbacks,
    fallback_errors,
    layer_label,
    record_failure,
)

BACKENDS = ("auto", "reference", "torch", "triton")
KERNEL_SETTINGS = ("auto", "eager", "c", "triton")


@dataclass(frozen=True)
class Plan:
    """How a layer runs and why.

    ``path``: "reference" (the per-step autograd reference), "torch" / "triton" (a fused leaky scan),
    "bntt-eager" / "bntt-c" / "bntt-triton" (a block's BNTT and neuron, and its synapse where it is a plain
    convolution or linear layer, as one node on that entry of :data:`~.backends.BLOCK_BACKENDS`), "unfused" (a
    block's norm, then its neuron's own plan), "pool-c" / "pool-torch" (2x2 average pooling on the C loops or
    torch's kernel).
    """

    path: str
    reason: str
    recompute: bool = False  # memory "low": the fused node keeps the synapse's input only, its output recomputed

    @property
    def fused(self) -> bool:
        """Whether a block's BNTT and neuron run as one node (on :data:`~.backends.BLOCK_BACKENDS`\\ ``[path]``)."""
        return self.path in BLOCK_BACKENDS

    bntt = fused


def kernel_setting() -> str:
    """``BNTT_KERNELS`` (default auto; an old spelling: :func:`bntt_snntorch._compat.old_kernel_setting`)."""
    setting = os.environ.get("BNTT_KERNELS") or old_kernel_setting() or "auto"
    if setting == "compiled":
        raise ValueError(
            "BNTT_KERNELS=compiled: the TorchInductor-compiled steps were retired (the C loops beat them at every "
            "layer measured); use auto, c, eager or triton"
        )
    if setting not in KERNEL_SETTINGS:
        raise ValueError(f"BNTT_KERNELS must be one of {', '.join(KERNEL_SETTINGS)}, got {setting!r}")
    return setting


def fusable(p) -> str | None:
    """Why the fused kernels cannot run neuron parameters ``p`` (a LeakyParams), or None if they can."""
    g = torch.as_tensor(p.graded_spikes_factor)
    if not isinstance(p.spike_grad, Surrogate):
        return f"spike_grad {p.spike_grad!r} has no closed-form derivative (use one of bntt_snntorch.surrogate)"
    if g.numel() != 1 or g.requires_grad:
        return "the graded-spikes factor is learnable or per neuron"
    return None


def triton_usable(device: torch.device) -> bool:
    """Triton is installed and can run on ``device`` (CUDA, or any device under ``TRITON_INTERPRET=1``)."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def choose_plan(
    x: torch.Tensor,
    p=None,
    backend: str = "auto",
    *,
    block: bool = False,
    norm=None,
    neuron=None,
    pool=None,
    grad: bool | None = None,
    bntt: bool | None = None,
    first_step: int = 0,
    memory: str = "default",
    synapse_inside: bool = False,
) -> Plan:
    """The plan for a layer fed ``x`` ``(T, B, ...)``.

    A neuron (or a block's neuron) with parameters ``p`` (LeakyParams, or None for a neuron no kernel runs;
    ``neuron``: the module, named in the reason) and the user's ``backend``; ``block=True``: a block whose
    ``norm`` (a module, or None) precedes the neuron and could be fused with it (``bntt=True`` says the same for
    a BNTT norm known to be fusable); ``pool``: an ``nn.AvgPool2d`` run on ``x`` ``(N, C, H, W)``. ``grad``:
    whether the call will be differentiated (None: whether ``x`` requires grad, with grad mode on; given where
    ``x`` was computed without a graph that is attached after); ``first_step``: the block's call continues a sequence
    from that step (the online rules' later calls). ``memory``: the block's mode (:func:`bntt_snntorch.set_memory`);
    "low" recomputes the synapse's output in the fused node's backward where the synapse runs inside it
    (``synapse_inside``: a plain convolution or linear layer, not under torch.compile), said in the reason. Raises a
    ValueError if a forced ``backend`` cannot run.

    The decision is taken from these facts as Python constants (:func:`_decide`); under ``torch.compile`` it is
    taken once while tracing, outside the traced graph (``assume_constant_result``: no graph break), where a
    layer's shape not measured yet runs the eager steps (nothing is timed inside a trace)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    facts = _facts(x, p, backend, block or bool(bntt), bool(bntt), norm, neuron, pool, grad, first_step)
    path, reason, error = _decide_while_tracing(facts) if torch.compiler.is_compiling() else _decide(facts, p)
    if error:
        raise (RuntimeError if error == "RuntimeError" else ValueError)(reason)
    if not block or memory != "low":
        return Plan(path, reason)
    why_not = _why_not_recomputed(path, norm, synapse_inside)
    if why_not:
        return Plan(path, f"{reason}; memory low not applied: {why_not}")
    return Plan(path, f"{reason}; memory low: keeps the synapse's input (spikes as bit planes where their range is "
                      "known, else int8 codes), recomputes its output in backward", True)  # fmt: skip


def _why_not_recomputed(path: str, norm, synapse_inside: bool) -> str | None:
    """Why memory "low" cannot recompute this block's synapse output, or None."""
    from ..accumulated_norm import _TemporalAccumulatedBatchNorm

    if path not in BLOCK_BACKENDS:
        return "the block is not one fused node (its parts keep what they keep)"
    if isinstance(norm, _TemporalAccumulatedBatchNorm):
        return "TAB's node keeps the synapse's output"
    if not synapse_inside:
        return "the synapse is not a plain convolution / linear layer inside the node (or torch.compile traces it)"
    return None


def _facts(x, p, backend, block, bntt, norm, neuron, pool, grad, first_step=0) -> tuple:
    """What the plan depends on, as Python constants."""
    grad = torch.is_grad_enabled() and x.requires_grad if grad is None else grad
    inputs = (tuple(x.shape), x.dtype, x.device.type, bool(grad), x.dim(), x.is_contiguous())
    if pool is not None:
        return ("pool", inputs, tuple(tuple(v) if isinstance(v, list) else v for v in _window(pool)))
    neuron_facts = (bool(getattr(neuron, "inhibition", False) or getattr(neuron, "state_quant", False)),
                    _origin(neuron), type(neuron).__name__, getattr(neuron, "unfused_reason", ""))  # fmt: skip
    p_facts = None if p is None else (fusable(p), p.beta.numel() == 1 and p.threshold.numel() == 1)
    norm_facts = None
    if norm is not None:
        from ..accumulated_norm import _TemporalAccumulatedBatchNorm
        from ..bntt import BatchNormTT

        bntt_norm, tab = isinstance(norm, BatchNormTT), isinstance(norm, _TemporalAccumulatedBatchNorm)
        tab_facts = (first_step > 0, torch.compiler.is_compiling()) if tab else None
        norm_facts = (
            _origin(norm),
            type(norm).__name__,
            bntt_norm or tab,
            tab or (bntt_norm and norm.fusable()),
            tab_facts,
        )
    setting = kernel_setting()
    return ("layer", inputs, backend, block, bntt, neuron_facts, p_facts, norm_facts, setting)


def _window(pool):
    from .c_pool import window

    return window(pool)


def _decide(facts: tuple, p=None) -> tuple[str, str, str | None]:
    """``(path, reason, error)`` from :func:`_facts`' ``facts`` (``error``: the exception to raise with ``reason``,
    or None). ``p``: the neuron's parameters, to measure a layer auto has not measured yet (None: no
    measurement)."""
    if facts[0] == "pool":
        return (*_pool_plan(*facts[1:]), None)
    _, inputs, backend, block, bntt, neuron, p_facts, norm, setting = facts
    shape, dtype, device, grad = inputs[:4]
    if block and not bntt:
        unfused = _why_unfused(norm, neuron, p_facts)
        if unfused:
            return "unfused", unfused, None
    why_not = _why_not_a_kernel(neuron, p_facts)
    if backend == "reference" or why_not:
        if backend in ("torch", "triton"):
            message = f"backend={backend!r} cannot run this layer: {why_not}; use backend='reference' or 'auto'"
            return "", message, "ValueError"
        reason = "backend='reference'" if backend == "reference" else why_not
        return ("unfused" if block else "reference"), reason, None
    if backend == "triton" or (backend == "auto" and (device == "cuda" or setting == "triton")):
        plan = _triton_plan(device, dtype, p_facts, block, forced=backend == "triton")
        if plan is not None:
            return plan
    if not block:
        if torch.compiler.is_compiling():  # (inside the trace's constant decision) the scans are opaque calls
            return "reference", "torch.compile traces the per-step reference (TorchInductor fuses its steps)", None
        return "torch", _why_torch(shape, dtype, device, backend, setting), None
    if backend == "auto" and device == "cpu" and setting in ("c", "auto"):
        why_not_c = BLOCK_BACKENDS["bntt-c"].supports(dtype, device, p_facts[1])
        if why_not_c:
            return "bntt-eager", why_not_c, None
        if "bntt-c" in fallback.FALLBACKS:
            return "bntt-eager", f"fallback: bntt-c failed before ({fallback.FALLBACKS['bntt-c']})", None
        if setting == "c":
            return "bntt-c", "BNTT_KERNELS=c", None
        return (*_measured_plan(shape, dtype, grad, p), None)
    return "bntt-eager", _why_torch(shape, dtype, device, backend, setting), None


#: :func:`_decide` as torch.compile runs it while tracing: once, its result a constant of the graph.
_decide_while_tracing = torch.compiler.assume_constant_result(lambda facts: _decide(facts))


def _origin(module) -> str:
    """ "plug-in " for a layer defined outside this package, else ""."""
    return "" if type(module).__module__.startswith("bntt_snntorch.") else "plug-in "


def _why_unfused(norm, neuron, p_facts) -> str | None:
    """Why a block's norm and neuron cannot run as one fused node, or None."""
    if norm is None:
        return "no norm"
    origin, name, bntt_norm, fusable_norm, tab = norm
    if not bntt_norm:
        return f"{origin}norm {name} is not a BNTT: its own multi_step, then the neuron"
    if tab and tab[0]:
        return f"{name} continuing a sequence: its prefix statistics join an earlier call's, its own multi_step"
    if tab and tab[1]:
        return f"{name} under torch.compile: its own multi_step, traced (the fused TAB node is not a torch.library op)"
    if not fusable_norm:
        return f"{name} synchronised over ranks or with cumulative averages"
    if p_facts is None:
        why = neuron[3] or "kernel_params() is None, its own step runs"
        return f"{neuron[1]}neuron {neuron[2]}: {why} (fused: leaky neurons)"
    return None


def _why_not_a_kernel(neuron, p_facts) -> str | None:
    """Why no kernel runs the neuron, or None."""
    if neuron[0]:
        return "inhibition / state_quant: snnTorch's own step, looped"
    return "the neuron is not a leaky layer the kernels run" if p_facts is None else p_facts[0]


def _measured_plan(shape, dtype, grad: bool, p) -> tuple[str, str]:
    """auto on CPU: the path this machine's measurement at ``shape`` found faster (the C loops by at least
    :data:`~.auto_choice.MIN_GAIN`, else the eager steps); measured now where it was not and ``p`` is given."""
    from . import auto_choice

    m = auto_choice.measured(shape, dtype, p, grad)
    if m is None:
        return "bntt-eager", "auto: this shape is not measured yet, and nothing is timed while torch.compile traces"
    return m.path, f"auto, {m}"


def _triton_plan(device: str, dtype, p_facts, block: bool, forced: bool):
    path = "bntt-triton" if block else "triton"
    problem = None
    if not triton_usable(torch.device(device)):
        problem = "Triton is not installed or cannot run on this device"
    else:  # the scan takes what the block's kernels take
        problem = BLOCK_BACKENDS["bntt-triton"].supports(dtype, device, p_facts[1])
    if problem is None and path in fallback.FALLBACKS:
        if forced:
            return "", f"backend='triton': the Triton path failed before in this process: {fallback.FALLBACKS[path]}", \
                "RuntimeError"  # fmt: skip
        return FALLBACK_PATH[path], f"fallback: {path} failed before ({fallback.FALLBACKS[path]})", None
    if problem is None:
        return path, "CUDA" if device == "cuda" else "TRITON_INTERPRET=1 / BNTT_KERNELS=triton", None
    if forced:
        return "", f"backend='triton': {problem}", "ValueError"
    return None


def _why_torch(shape, dtype, device: str, backend: str, setting: str) -> str:
    if backend == "torch":
        return "backend='torch'"
    if setting == "eager":
        return "BNTT_KERNELS=eager"
    if device == "cuda":
        return "CUDA without a usable Triton path"
    neurons = 1
    for n in shape[1:]:
        neurons *= n
    return f"{device}, {neurons} neurons a step ({dtype})"


def _pool_plan(inputs, window) -> tuple[str, str]:
    """Average pooling: the C loops where they compute the pool (:func:`~.c_pool.applies`), else torch's kernel."""
    from . import c_pool

    shape, dtype, device, _, dims, contiguous = inputs
    if torch.compiler.is_compiling():
        return "pool-torch", "torch.compile traces torch's kernel"
    if "pool-c" in fallback.FALLBACKS:
        return "pool-torch", f"fallback: pool-c failed before ({fallback.FALLBACKS['pool-c']})"
    if kernel_setting() == "eager":
        return "pool-torch", "BNTT_KERNELS=eager"
    if not c_pool.applies_to(shape, dtype, device, contiguous, *window):
        return "pool-torch", "not 2x2 windows, stride 2, of a contiguous float32 CPU map with even sides"
    return "pool-c", "2x2 windows of a float32 CPU map: C loops, bit for bit torch's kernel"


# -- explain ----------------------------------------------------------------------------------------
_RECORDING: list | None = None


def report(module, plan: Plan) -> Plan:
    """Called by a layer with the plan it takes; recorded while :func:`explain` runs. Until the layer
    says otherwise (:func:`record_taken`), the path taken is the plan's. (Nothing is recorded inside a
    torch.compile trace.)"""
    if torch.compiler.is_compiling():
        return plan
    if _RECORDING is not None:
        _RECORDING.append((module, plan))
    record_taken(module, plan.path)
    return plan


def record_taken(module, path: str) -> None:
    """The path ``module``'s last call actually ran (the plan's, or its fallback's)."""
    if module is not None and not torch.compiler.is_compiling():
        module.__dict__["_kernel_path_taken"] = path


@dataclass(frozen=True)
class LayerPlan:
    """One layer's line of :func:`explain`: the plan's ``path`` and ``reason``, and the path the call
    actually ``taken`` (another one when the planned path could not compile or launch)."""

    layer: str
    path: str
    reason: str
    taken: str | None = None

    def __str__(self) -> str:
        took = "" if self.taken in (None, self.path) else f" -> took {self.taken}"
        return f"{self.layer}: {self.path} ({self.reason}){took}"


@contextlib.contextmanager
def _recording():
    global _RECORDING
    outer, _RECORDING = _RECORDING, []
    try:
        yield _RECORDING
    finally:
        _RECORDING = outer


def explain(model: torch.nn.Module, x_seq: torch.Tensor) -> list[LayerPlan]:
    """Run ``model(x_seq)`` once (no gradient; the buffers, running statistics included, are restored)
    and return, per layer, the kernel path planned and why (fallbacks after an earlier failure
    included, with the error), and the path the call actually took."""
    names = {m: name or type(model).__name__ for name, m in model.named_modules()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    with _recording() as seen, torch.no_grad():
        model(x_seq)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return [
        LayerPlan(names.get(m, type(m).__name__), plan.path, plan.reason, m.__dict__.get("_kernel_path_taken"))
        for m, plan in seen
    ]
