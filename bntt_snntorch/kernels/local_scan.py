"""The leaky scan with SLTT's gradient: each step's spikes differentiated through that step's own input
only (Meng et al. 2023), for online training run several steps at a time, the neuron alone
(:func:`local_leaky_scan`; after BNTT the block runs as one node, :func:`~.fused_block.fused_block` with
``through_time=False``).

SLTT drops the gradient through the membrane from one step to the next, so with the membrane before
the first step given (detached), the whole sequence's spikes come from one scan without a graph, and
the gradient at step t's input is ``dL/dspk_t * g * surrogate'(h_t - theta)`` — elementwise, with
``h_t`` the step's membrane before firing. That is exactly what the per-step online path
(``SpikingBlock.step`` with ``online_rule="sltt"``) differentiates, for every reset variant (tested);
saved for backward: the surrogate's slope only.
"""

from __future__ import annotations

import torch

from .. import definition as D
from .torch_scan import NeuronSpec, NeuronTensors, forward_scan


class _LocalFire(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cur_seq, spk_seq, fire_slope):
        ctx.save_for_backward(fire_slope)
        return spk_seq

    @staticmethod
    def backward(ctx, grad_spk):
        (fire_slope,) = ctx.saved_tensors
        return (grad_spk * fire_slope).to(grad_spk.dtype), None, None


def local_leaky_scan(cur_seq: torch.Tensor, p, mem0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``(T, B, ...)`` of a leaky layer (LeakyParams ``p``, a scalar leak and threshold without
    gradient) driven by ``cur_seq`` from membrane ``mem0`` ``(B, ...)`` (zeros when None), differentiable
    with respect to ``cur_seq`` through each step's own input only; and the membrane after the last
    step (no gradient), to start the next steps from."""
    state = torch.promote_types(cur_seq.dtype, torch.float32)
    tensors = NeuronTensors.of(p, cur_seq.device, state)
    spec = NeuronSpec.of(p)
    with torch.no_grad():
        current = cur_seq.detach()
        mem0 = torch.zeros_like(current[0], dtype=state) if mem0 is None else mem0.to(state)
        h_seq = torch.empty_like(current, dtype=state)
        spk_seq = torch.empty_like(current, dtype=state)
        mem = forward_scan(
            lambda t: current[t].to(state), len(current), mem0, tensors, spec, {"h": h_seq, "spk": spk_seq}
        )
        fire_slope = D.fire_gradient(1.0, tensors.g, spec.surrogate.derivative(h_seq - tensors.theta))
    spikes = _LocalFire.apply(cur_seq, spk_seq.to(cur_seq.dtype), fire_slope)
    return spikes, mem
