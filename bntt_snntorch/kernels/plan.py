"""One place decides which kernel runs a layer: :func:`choose_plan` returns a named :class:`Plan`.

Every layer asks it (``Leaky.multi_step`` for a scan, ``SpikingBlock`` for a synapse -> BNTT ->
neuron block) with what decides the path: the device, the dtype, one step's size, the layer's
``backend`` and whether its neuron and norm can be fused. The one environment override is
``BNTT_KERNELS``:

* ``auto`` (default): Triton on CUDA; on CPU the eager torch kernels, the C loops (:mod:`.c_bntt`) or
  the TorchInductor-compiled BNTT steps, whichever a measurement on this machine, at the layer's
  shape, found faster (:mod:`.compile_choice`: taken once, kept beside the compile cache);
* ``eager``: never compile, never Triton, no C loops (the torch kernels, average pooling's included);
* ``compiled``: compile the BNTT steps on CPU at any size;
* ``c``: the C loops on CPU wherever they apply (float32 convolution and linear blocks, scalar leak and threshold);
* ``triton``: Triton wherever it can run (on CPU under ``TRITON_INTERPRET=1``).

Every setting but ``eager`` pools 2x2 windows of float32 CPU maps on C loops (:mod:`.pooling`, :mod:`.c_pool`:
bit for bit torch's kernel, several times faster).

One fallback rule (:func:`attempt`): only the errors that mean "this backend cannot compile or
launch here" (:func:`fallback_errors`: a missing module, TorchInductor's and Dynamo's compile
failures, Triton's compilation, PTX-assembler and out-of-resources errors) fall back, once, to the
next path (Triton -> torch, compiled or C -> eager) with one warning naming the layer, the path, the
cause and ``BNTT_KERNELS``; the failure is recorded in :data:`FALLBACKS` (cleared by
:func:`clear_fallbacks`) and later plans take the next path and say why. Any other exception is a
bug and propagates. :func:`explain` runs a model once and reports every layer's plan and the path
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
KERNEL_SETTINGS = ("auto", "eager", "compiled", "c", "triton")


@dataclass(frozen=True)
class Plan:
    """How a layer runs and why.

    ``path``: "reference" (the per-step autograd reference), "torch" / "triton" (a fused leaky
    scan), "bntt-eager" / "bntt-compiled" / "bntt-c" / "bntt-triton" (BNTT and the neuron as one fused
    node: batch norm's own kernels per step, TorchInductor-compiled steps, C loops, or one Triton kernel),
    "unfused" (the norm, then the neuron's own scan).
    """

    path: str
    reason: str

    @property
    def bntt(self) -> bool:
        """Whether BNTT and the neuron run as one fused node."""
        return self.path.startswith("bntt-")


def kernel_setting() -> str:
    """``BNTT_KERNELS`` (default auto; an old spelling: :func:`bntt_snntorch._compat.old_kernel_setting`)."""
    setting = os.environ.get("BNTT_KERNELS") or old_kernel_setting() or "auto"
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
    x: torch.Tensor, p, backend: str = "auto", bntt: bool = False, calls_per_batch: int = 1, grad: bool | None = None
) -> Plan:
    """The plan for a layer fed ``x`` ``(T, B, ...)`` with neuron parameters ``p`` (LeakyParams, or None
    for a neuron no kernel runs) and the user's ``backend``; ``bntt``: a BNTT norm precedes the neuron
    and could be fused with it; ``calls_per_batch``: the layer's calls a batch (several for the online
    rules' chunks; auto's compile must pay back over them); ``grad``: whether the call will be
    differentiated (None: whether ``x`` requires grad, with grad mode on; given where ``x`` was computed
    without a graph that is attached after). Raises a ValueError if a forced ``backend`` cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    why_not = "the neuron is not a leaky layer the kernels run" if p is None else fusable(p)
    if backend == "reference" or why_not:
        if backend in ("torch", "triton"):
            raise ValueError(f"backend={backend!r} cannot run this layer: {why_not}; use backend='reference' or 'auto'")
        reason = "backend='reference'" if backend == "reference" else why_not
        return Plan("unfused" if bntt else "reference", reason)
    setting = kernel_setting()
    scalar = p.beta.numel() == 1 and p.threshold.numel() == 1
    if backend == "triton" or (backend == "auto" and (x.is_cuda or setting == "triton")):
        plan = _triton_plan(x, scalar, bntt, forced=backend == "triton")
        if plan is not None:
            return plan
    if not bntt:
        return Plan("torch", _why_torch(x, backend, setting))
    compilable = backend == "auto" and x.device.type == "cpu" and scalar and x.dtype in _COMPILED_DTYPES
    if compilable and setting in ("compiled", "c"):
        path = "bntt-compiled" if setting == "compiled" else "bntt-c"
        if path in fallback.FALLBACKS:
            return Plan("bntt-eager", f"fallback: {path} failed before ({fallback.FALLBACKS[path]})")
        why_not_c = _why_not_c(x, p) if setting == "c" else None
        return Plan("bntt-eager", why_not_c) if why_not_c else Plan(path, f"BNTT_KERNELS={setting}")
    if compilable and setting == "auto":
        return _measured_plan(x, p, calls_per_batch, grad)
    return Plan("bntt-eager", _why_torch(x, backend, setting))


def _why_not_c(x: torch.Tensor, p) -> str | None:
    from .c_bntt import supports

    return supports(x, p)


def _measured_plan(x: torch.Tensor, p, calls_per_batch: int, grad: bool | None) -> Plan:
    """auto on CPU: the path this machine's measurement at ``x``'s shape found fastest (by at least
    :data:`~.compile_choice.MIN_GAIN`): the compiled steps, the C loops, or the eager ones."""
    from . import compile_choice

    grad = torch.is_grad_enabled() and x.requires_grad if grad is None else grad
    m = compile_choice.measured(x, p, grad, calls_per_batch=calls_per_batch)
    if m is None:
        return Plan(
            "bntt-eager", "auto: this shape is not measured yet, and nothing is timed while torch.compile traces"
        )
    path = m.path
    if path in fallback.FALLBACKS:
        instead = m.uncompiled[0] if path == "bntt-compiled" else "bntt-eager"
        instead = "bntt-eager" if instead in fallback.FALLBACKS else instead
        return Plan(instead, f"fallback: {path} failed before ({fallback.FALLBACKS[path]})")
    return Plan(path, f"auto, {m}")


_COMPILED_DTYPES = (torch.float32, torch.bfloat16)


def _triton_plan(x: torch.Tensor, scalar: bool, bntt: bool, forced: bool) -> Plan | None:
    path = "bntt-triton" if bntt else "triton"
    problem = None
    if not triton_usable(x.device):
        problem = "Triton is not installed or cannot run on this device"
    elif not scalar:
        problem = "the Triton kernels take a scalar beta and threshold"
    elif x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        problem = f"the Triton kernels take float32/bfloat16/float16 input, got {x.dtype}"
    elif path in fallback.FALLBACKS:
        if forced:
            raise RuntimeError(
                f"backend='triton': the Triton path failed before in this process: {fallback.FALLBACKS[path]}"
            )
        return Plan("bntt-eager" if bntt else "torch", f"fallback: {path} failed before ({fallback.FALLBACKS[path]})")
    if problem is None:
        return Plan(path, "CUDA" if x.is_cuda else "TRITON_INTERPRET=1 / BNTT_KERNELS=triton")
    if forced:
        raise ValueError(f"backend='triton': {problem}")
    return None


def _why_torch(x: torch.Tensor, backend: str, setting: str) -> str:
    if backend == "torch":
        return "backend='torch'"
    if setting == "eager":
        return "BNTT_KERNELS=eager"
    if x.is_cuda:
        return "CUDA without a usable Triton path"
    return f"{x.device.type}, {x[0].numel()} neurons a step ({x.dtype})"


# -- explain ----------------------------------------------------------------------------------------
_RECORDING: list | None = None


def report(module, plan: Plan) -> Plan:
    """Called by a layer with the plan it takes; recorded while :func:`explain` runs. Until the layer
    says otherwise (:func:`record_taken`), the path taken is the plan's."""
    if _RECORDING is not None:
        _RECORDING.append((module, plan))
    record_taken(module, plan.path)
    return plan


def record_taken(module, path: str) -> None:
    """The path ``module``'s last call actually ran (the plan's, or its fallback's)."""
    if module is not None:
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
