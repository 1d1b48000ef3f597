"""Fused kernels for spiking layers, and the one place that decides which runs.

* :func:`leaky_scan` — a leaky layer over a sequence ``(T, B, ...)``: the per-step reference
  (autograd through every step), one torch autograd node (:mod:`.torch_scan`), or one Triton
  kernel per direction (:mod:`.triton_scan`).
* :func:`fused_block` — a ``synapse -> BNTT -> leaky`` block as one node that keeps the synapse's output and the
  per-step statistics only, on an entry of the table :data:`BLOCK_BACKENDS` (:mod:`.backends`): the eager steps,
  the C loops (:mod:`.c_bntt`) or Triton (:mod:`.triton_bntt`).
* :func:`choose_plan` picks the path (:mod:`.plan`); :func:`explain` reports every layer's.

All of them evaluate the one definition, :mod:`bntt_snntorch.definition`.
"""

from __future__ import annotations

import torch

from ..definition import VARIANTS, Variant
from ..functional import leaky_sequence_reference
from . import spike_synapse
from .backends import BLOCK_BACKENDS, Backend, BlockSpec, Coefficients
from .fused_block import fused_block
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
    "BLOCK_BACKENDS",
    "Backend",
    "BlockSpec",
    "Coefficients",
    "FALLBACKS",
    "LayerPlan",
    "NeuronSpec",
    "NeuronTensors",
    "Plan",
    "VARIANTS",
    "Variant",
    "attempt",
    "choose_plan",
    "clear_fallbacks",
    "explain",
    "fallback_errors",
    "fused_block",
    "leaky_scan",
    "record_taken",
    "report",
    "spike_synapse",
]


def _triton_scan(x_seq, mem0, tensors, spec):
    from .triton_scan import leaky_scan_triton

    return leaky_scan_triton(x_seq, mem0, tensors, spec)


#: The fused leaky scans, by path.
SCANS = {"torch": leaky_scan_torch, "triton": _triton_scan}


@torch.compiler.disable
def _fused_scan(path: str, x_seq, p, mem):
    state = torch.promote_types(x_seq.dtype, torch.float32)  # float32 at least, also under bf16 autocast
    mem0 = torch.zeros(x_seq.shape[1:], dtype=state, device=x_seq.device) if mem is None else mem.to(state)
    return SCANS[path](x_seq, mem0, NeuronTensors.of(p, x_seq.device, state), NeuronSpec.of(p))


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
    if plan.path not in SCANS:  # the per-step reference
        return leaky_sequence_reference(x_seq, p, mem)
    out, path = attempt(layer, plan.path, lambda path: _fused_scan(path, x_seq, p, mem), backend != "triton")
    record_taken(layer, path)
    return out
