"""The leaky scan with SLTT's gradient: each step's spikes differentiated through that step's own input
only (Meng et al. 2023), for online training run several steps at a time; alone
(:func:`local_leaky_scan`) or after BNTT as one node (:func:`local_bntt_scan`).

SLTT drops the gradient through the membrane from one step to the next, so with the membrane before
the first step given (detached), the whole sequence's spikes come from one scan without a graph, and
the gradient at step t's input is ``dL/dspk_t * g * surrogate'(h_t - theta)`` — elementwise, with
``h_t`` the step's membrane before firing. That is exactly what the per-step online path
(``SpikingBlock.step`` with ``online_rule="sltt"``) differentiates, for every reset variant (tested);
saved for backward: the surrogate's slope only. After BNTT, the one node saves the synapse output
and the per-step statistics only, and recomputes the currents and the scan in backward (as BPTT's
fused node, :mod:`.bntt_scan`, does), then turns each step's current gradient into batch norm's input
and gamma gradients with batch norm's own backward kernel.
"""

from __future__ import annotations

import torch

from .. import definition as D
from .bntt_scan import (
    BNTTNorm,
    _c_backward,
    _c_forward,
    _compiled_backward,
    _compiled_forward,
    _eager_currents,
    _scaled_weight,
    batch_norm_backward_steps,
    loop_arguments,
    node_parts,
)
from .fallback import attempt, fallback_errors, record_failure
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


def _scan(current_at, num_steps: int, mem0: torch.Tensor, p, like: torch.Tensor, keep: str):
    """The scan without a graph from ``mem0``: ``(buffer "h" or "spk" (T, B, ...), last membrane)``."""
    state = mem0.dtype
    tensors, spec = NeuronTensors.of(p, like.device, state), NeuronSpec.of(p)
    buffer = torch.empty(like.shape, dtype=state if keep == "h" else like.dtype, device=like.device)
    mem = forward_scan(lambda t: current_at(t).to(state), num_steps, mem0, tensors, spec, {keep: buffer})
    return buffer, mem


class _LocalBNTTScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, weight, mean, var, mem0, norm: BNTTNorm, p, path: str, label):
        ctx.save_for_backward(x_seq, weight, mean, var, mem0)
        ctx.norm, ctx.p, ctx.path, ctx.label = norm, p, path, label
        if path == "bntt-compiled":  # a compile failure propagates: local_bntt_scan's attempt falls back
            tensors, spec = node_parts(norm, p, path, x_seq.device, torch.float32)
            spikes, mem = _compiled_forward(x_seq, weight, mean, var, tensors, spec, mem0)
        elif path == "bntt-c":  # a build failure propagates the same way
            tensors, spec = node_parts(norm, p, path, x_seq.device, torch.float32)
            args = loop_arguments(weight, mean, var, tensors, spec)
            spikes, mem = _c_forward(x_seq, args, norm.training, mem0, through_time=False)
        else:
            w = _scaled_weight(weight, x_seq.shape[2], norm.scale, mean)
            spikes, mem = _scan(_eager_currents(x_seq, w, mean, var, norm.eps), len(x_seq), mem0, p, x_seq, "spk")
        ctx.mark_non_differentiable(mem)
        return spikes, mem

    @staticmethod
    def backward(ctx, grad_spk, _):
        x_seq, weight, mean, var, mem0 = ctx.saved_tensors
        norm, p = ctx.norm, ctx.p
        need_weight = weight is not None and ctx.needs_input_grad[1]
        if ctx.path == "bntt-c":
            tensors, spec = node_parts(norm, p, ctx.path, x_seq.device, torch.float32)
            args = loop_arguments(weight, mean, var, tensors, spec)
            grad_x, sum_xhat, _, _ = _c_backward(grad_spk, x_seq, mean, args, norm.training, mem0, False)
            return grad_x, sum_xhat * norm.scale if need_weight else None, *([None] * 7)
        if ctx.path == "bntt-compiled":
            try:
                tensors, spec = node_parts(norm, p, ctx.path, x_seq.device, torch.float32)
                grad_x, sum_xhat, _, _ = _compiled_backward(
                    spec, grad_spk, x_seq, weight, mean, var, tensors, mem0, through_time=False
                )
                return grad_x, sum_xhat * norm.scale if need_weight else None, *([None] * 7)
            except fallback_errors() as err:  # the backward compiles on first use; the eager steps compute the same
                record_failure("bntt-compiled", err, ctx.label)
        w = _scaled_weight(weight, x_seq.shape[2], norm.scale, mean)
        h_seq, _ = _scan(_eager_currents(x_seq, w, mean, var, norm.eps), len(x_seq), mem0, p, x_seq, "h")
        tensors, spec = NeuronTensors.of(p, x_seq.device, mem0.dtype), NeuronSpec.of(p)
        dcur_seq = D.fire_gradient(grad_spk, tensors.g, spec.surrogate.derivative(h_seq.sub_(tensors.theta)))
        grad_x, grad_weight, grad_x_at = batch_norm_backward_steps(
            x_seq, weight, mean, var, norm.eps, norm.scale, norm.training, need_weight
        )
        for t, dcur in enumerate(dcur_seq):
            grad_x_at(t, dcur)
        return grad_x, grad_weight, *([None] * 7)


def local_bntt_scan(
    x_seq: torch.Tensor, norm: BNTTNorm, p, mem0: torch.Tensor | None, path: str = "bntt-eager", label=None
):
    """Spikes ``(T, B, C, ...)`` of a leaky layer (LeakyParams ``p``: a scalar leak and threshold without
    gradient) driven by ``norm.scale * BNTT(x_seq)`` with the per-step statistics of ``norm`` (a
    :class:`~.bntt_scan.BNTTNorm`), from membrane ``mem0`` (zeros when None), differentiable with respect
    to ``x_seq`` and the gammas through each step's own input only; and the last membrane (no
    gradient). Saves ``x_seq`` and the statistics only. ``path``: the steps eager ("bntt-eager"), as
    compiled loops ("bntt-compiled", BPTT's :mod:`.compiled_steps` without the carry through time) or as
    the C loops ("bntt-c", :mod:`.c_bntt` without the carry); a compile or build failure falls back to
    the eager steps, recorded against ``label``."""
    state = torch.promote_types(x_seq.dtype, torch.float32)
    mem0 = torch.zeros(x_seq.shape[1:], dtype=state, device=x_seq.device) if mem0 is None else mem0.to(state)
    mean, var = norm.mean.to(state), norm.var.to(state)
    run = lambda path: _LocalBNTTScan.apply(x_seq, norm.weight, mean, var, mem0, norm, p, path, label)  # noqa: E731
    return attempt(label, path, run)[0]
