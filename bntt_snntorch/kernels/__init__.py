"""Fused kernels for spiking layers, and the one place that decides which runs.

* :func:`leaky_scan` — a leaky layer over a sequence ``(T, B, ...)``: the per-step reference
  (autograd through every step), one torch autograd node (:mod:`.torch_scan`), or one Triton
  kernel per direction (:mod:`.triton_scan`).
* :func:`bntt_leaky_scan` — the ``synapse -> BNTT -> leaky`` block's BNTT and neuron as one node
  that keeps only the synapse output for backward: batch norm's own kernels per step, compiled
  CPU steps (:mod:`.bntt_scan`, :mod:`.compiled_steps`), C loops built from the definition
  (:mod:`.c_bntt`), or Triton (:mod:`.triton_bntt`).
* :func:`choose_plan` picks the path (:mod:`.plan`); :func:`explain` reports every layer's.

All of them evaluate the one neuron definition, :mod:`bntt_snntorch.definition`. Under
``torch.compile`` a fused call stays one opaque node (the Triton block is a ``torch.library``
custom op); the layers around it are compiled.
"""

from __future__ import annotations

import torch

from ..definition import VARIANTS, Variant
from ..functional import leaky_sequence_reference
from . import spike_synapse
from .bntt_scan import BNTTNorm, bntt_leaky_scan_c_training, bntt_leaky_scan_cpu, loop_arguments, node_parts
from .plan import (
    BACKENDS,
    FALLBACKS,
    LayerPlan,
    Plan,
    attempt,
    choose_plan,
    clear_fallbacks,
    explain,
    fallback_errors,
    record_taken,
    report,
)
from .torch_scan import NeuronSpec, NeuronTensors, leaky_scan_torch

__all__ = [
    "BACKENDS",
    "BNTTNorm",
    "FALLBACKS",
    "LayerPlan",
    "NeuronSpec",
    "NeuronTensors",
    "Plan",
    "VARIANTS",
    "Variant",
    "attempt",
    "batch_statistics",
    "bntt_leaky_scan",
    "bntt_leaky_scan_c_training",
    "choose_plan",
    "clear_fallbacks",
    "explain",
    "fallback_errors",
    "leaky_scan",
    "record_taken",
    "report",
    "spike_synapse",
]


def _state_dtype(x: torch.Tensor) -> torch.dtype:
    """The membrane's dtype: float32 at least (also under bf16 autocast), float64 for float64 input."""
    return torch.promote_types(x.dtype, torch.float32)


@torch.compiler.disable
def _fused_scan(path: str, x_seq, p, mem):
    state = _state_dtype(x_seq)
    mem0 = torch.zeros(x_seq.shape[1:], dtype=state, device=x_seq.device) if mem is None else mem.to(state)
    tensors, spec = NeuronTensors.of(p, x_seq.device, state), NeuronSpec.of(p)
    if path == "triton":
        from .triton_scan import leaky_scan_triton

        return leaky_scan_triton(x_seq, mem0, tensors, spec)
    return leaky_scan_torch(x_seq, mem0, tensors, spec)


def leaky_scan(
    x_seq: torch.Tensor,
    p,
    mem: torch.Tensor | None = None,
    backend: str = "auto",
    plan: Plan | None = None,
    layer: torch.nn.Module | None = None,
):
    """Run a leaky layer (:class:`~bntt_snntorch.functional.LeakyParams` ``p``) over ``x_seq`` ``(T, B, ...)``
    from membrane ``mem`` ``(B, ...)`` (zeros when None) -> ``(spk_seq, mem_seq)``.

    ``plan`` (default: :func:`choose_plan` for ``backend``) says which kernel runs; a Triton scan that
    cannot compile or launch here falls back to the torch scan (:func:`attempt`; not when
    ``backend="triton"`` forces it). ``layer``: the module running, named in a fallback's warning,
    its path recorded for :func:`explain`. Fused paths keep the membrane in float32 at least (also
    under bf16 autocast) and return spikes in the input's dtype.
    """
    plan = plan or choose_plan(x_seq, p, backend)
    if plan.path == "reference":
        return leaky_sequence_reference(x_seq, p, mem)
    out, path = attempt(layer, plan.path, lambda path: _fused_scan(path, x_seq, p, mem), backend != "triton")
    record_taken(layer, path)
    return out


def _triton_block(x_seq, norm: BNTTNorm, p):
    from . import triton_bntt

    mean, var = norm.mean.float(), norm.var.float()
    tensors, spec = node_parts(norm, p, "bntt-triton", x_seq.device, torch.float32)
    a = loop_arguments(None if norm.weight is None else norm.weight.detach(), mean, var, tensors, spec)
    mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
    return triton_bntt.bntt_leaky(
        x_seq.contiguous(), norm.weight, a.k, a.shift, mean.contiguous(), a.rstd, mem0, a.params,
        [int(c) for c in a.codes], [float(v) for v in a.surrogate], bool(norm.training), float(norm.scale),
    )  # fmt: skip


def bntt_leaky_scan(x_seq: torch.Tensor, norm: BNTTNorm, p, plan: Plan | str, layer=None) -> torch.Tensor:
    """Spikes ``(T, B, C, ...)`` of a leaky layer (LeakyParams ``p``) driven by ``norm.scale * BNTT(x_seq)``,
    from zero membrane, on the fused path ``plan`` ("bntt-eager", "bntt-compiled", "bntt-c", "bntt-triton", or a
    Plan of one). Errors propagate: the caller applies the fallback rule (:func:`attempt`); ``layer``
    is named if the compiled backward falls back."""
    path = plan.path if isinstance(plan, Plan) else plan
    if path == "bntt-triton":
        return _triton_block(x_seq, norm, p)
    return bntt_leaky_scan_cpu(x_seq, norm, p, path, layer)


def batch_statistics(plan: Plan | str):
    """The function that computes each step's batch statistics on ``plan``'s path (the Triton kernel
    for "bntt-triton", the C loop for "bntt-c"), or None for BNTT's own per-step batch-norm kernels."""
    path = plan.path if isinstance(plan, Plan) else plan
    if path == "bntt-c":
        from .c_bntt import batch_statistics as c_statistics

        return c_statistics
    if path != "bntt-triton":
        return None
    from .triton_bntt import batch_statistics as triton_statistics

    return triton_statistics
