"""The ``synapse -> TAB -> leaky`` block as one autograd node, on any backend of the table (:mod:`.backends`).

TAB (:mod:`bntt_snntorch.accumulated_norm`) is, at each step, an affine map per channel of the step's input, with
the statistics of the prefix ``x_0 .. x_t``::

    current_t = s * p_t^2 * (weight_t * (x_t - mean_{0..t}) / sqrt(var_{0..t} + eps) + bias_t)
              = k_t * x_t + shift_t

so the backends run it as they run BNTT, from other coefficients: the step statistics (the backend's one pass),
merged into the prefix's over T in one pass of ``(C,)`` operations (:func:`~bntt_snntorch.definition.merged_mean`,
:func:`~bntt_snntorch.definition.merged_squares`), the coefficients, the backend's forward. The backward runs the
backend's with the statistics held fixed (``dL/dx = k * dy`` and the per-(step, channel) sums ``sum(dy)`` and
``sum(dy * xhat)``), then adds the prefix statistics' term ``A_s + B_s * x_s`` in place
(:func:`~bntt_snntorch.definition.prefix_gradient_terms`): O(T) forward and backward, where the authors' layer
normalises ``T(T+1)/2`` slices. The parameters' gradients come from the same sums. The node keeps what
BNTT's keeps: the synapse's output (or, with the synapse inside, its int8-coded input as well) and ``(T, C)``
tables.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
from torch import nn

from .. import definition as D
from . import spike_synapse
from .backends import BLOCK_BACKENDS, Backend, BlockSpec, Coefficients, neuron_gradients
from .overwrite import overwritable
from .torch_scan import NeuronSpec, NeuronTensors


class _Call(NamedTuple):
    """The static part of one node's call: backend, spec (``training`` False: the backend's backward holds the
    statistics fixed), whether the statistics are the batch's, the synapse's convolution arguments (None: linear
    or outside), quantum, input shape and dtype, and whether the last membrane is returned."""

    backend: Backend
    spec: BlockSpec
    training: bool
    conv: dict | None
    quantum: float | None
    x_shape: torch.Size | None
    x_dtype: torch.dtype | None
    last: bool


def prefix_statistics(step_mean: torch.Tensor, step_var: torch.Tensor, count: int):
    """Each prefix's ``(mean, biased variance)`` ``(T, C)`` (in the steps' dtype) and counts ``N_t`` ``(T, 1)``
    (double), from each step's mean and biased variance ``(T, C)`` over ``count`` values a channel: merged one step
    at a time in double, as :class:`~bntt_snntorch.accumulated_norm.TemporalAccumulatedBatchNorm2d` merges them."""
    means, variances, n = [], [], 0
    mean = squares = None
    for m, v in zip(D.wide(step_mean), D.wide(step_var)):
        if mean is None:
            mean, squares = m, v * count
        else:
            merged = D.merged_mean(mean, n, m, count)
            squares = D.merged_squares(squares, mean, n, v * count, m, count)
            mean = merged
        n += count
        means.append(mean)
        variances.append(squares / n)
    counts = torch.arange(1, len(means) + 1, dtype=torch.float64, device=step_mean.device)[:, None] * count
    return torch.stack(means).to(step_mean.dtype), torch.stack(variances).to(step_mean.dtype), counts


class FusedTABLeaky(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cur, x, synapse_weight, mean, var, mem0, beta, theta, g, weight, bias, p, call: _Call):
        neuron = NeuronTensors(beta, theta, g)
        state = beta.dtype
        counts = None
        if call.training:  # the prefixes' statistics from the steps' (one pass of the backend)
            mean, var, counts = prefix_statistics(*call.backend.statistics(cur), cur[0].numel() // cur.shape[2])
        rstd = D.inverse_std(var, call.spec.eps)
        gain = (p.detach() * p.detach())[:, None].to(state) * call.spec.scale
        k, shift = D.coefficients(mean, rstd, weight.detach().to(state), 1.0)
        k, shift = (k * gain).contiguous(), ((shift + bias.detach().to(state)) * gain).contiguous()
        coefficients = Coefficients(k, shift, rstd.contiguous())
        spikes, last = call.backend.forward(cur, coefficients, mem0, neuron, call.spec, call.last)
        kept = spike_synapse.kept_input(x, call.quantum, cur.dtype) if ctx.needs_input_grad[2] else None
        ctx.save_for_backward(cur, mean, k, shift, rstd, mem0, beta, theta, g, weight, bias, p, counts, kept,
                              synapse_weight)  # fmt: skip
        ctx.call = call
        statistics = (mean, var) if call.training else (None, None)
        ctx.mark_non_differentiable(*(o for o in (last, *statistics) if o is not None))
        return spikes, last, *statistics

    @staticmethod
    def backward(ctx, grad_spk, *_):  # the membrane and the statistics have no gradient
        cur, mean, k, shift, rstd, mem0, beta, theta, g, weight, bias, p, counts, kept, synapse_weight = (
            ctx.saved_tensors
        )
        call, need = ctx.call, ctx.needs_input_grad
        out = grad_spk if overwritable(grad_spk, cur, sys.getrefcount(grad_spk)) else None
        grad_cur, sum_dy_xhat, d_beta, d_theta, sum_dy = call.backend.backward(
            grad_spk, cur, Coefficients(k, shift, rstd), mean, mem0, NeuronTensors(beta, theta, g), call.spec,
            (need[6], need[7]), out,
        )  # fmt: skip
        state, scale = rstd.dtype, call.spec.scale
        w, b, q = weight.detach().to(state), bias.detach().to(state), p.detach().to(state)[:, None]
        gain = q * q * scale
        if call.training:  # through the prefix statistics: dL/dx_s += A_s + B_s * x_s
            d_mean = -k * sum_dy
            d_var = -0.5 * gain * w * rstd * rstd * sum_dy_xhat
            a, b_x = D.prefix_gradient_terms(D.wide(d_mean), D.wide(d_var), D.wide(mean), counts)
            shape = (cur.shape[0], 1, cur.shape[2], *[1] * (cur.dim() - 3))
            grad_cur.addcmul_(cur, b_x.to(grad_cur.dtype).view(shape)).add_(a.to(grad_cur.dtype).view(shape))
        grad_weight = (gain * sum_dy_xhat).to(weight.dtype) if need[9] else None
        grad_bias = (gain * sum_dy).to(bias.dtype) if need[10] else None
        grad_p = (2 * q[:, 0] * scale * (w * sum_dy_xhat + b * sum_dy).sum(1)).to(p.dtype) if need[11] else None
        grad_beta, grad_theta = neuron_gradients(d_beta, d_theta, beta, theta, (need[6], need[7]))
        grad_cur, grad_x, grad_w = spike_synapse.inside_backward(grad_cur, kept, synapse_weight, call, need[1])
        return (grad_cur, grad_x, grad_w, None, None, None, grad_beta, grad_theta, None, grad_weight, grad_bias,
                grad_p, None)  # fmt: skip


def fused_tab(path: str, cur: torch.Tensor, norm, p, scale: float = 1.0, *, synapse: nn.Module | None = None,
              x: torch.Tensor | None = None, quantum: float | None = None, mem0: torch.Tensor | None = None,
              last: bool = False):  # fmt: skip
    """Spikes ``(T, B, C, ...)`` of a leaky layer (LeakyParams ``p``) driven by ``scale * TAB(cur)`` (``norm`` a
    :class:`~bntt_snntorch.TemporalAccumulatedBatchNorm2d` / ``1d`` run as steps ``0 .. T-1``) from membrane
    ``mem0``, on the backend of ``path``; and the last membrane (None unless ``last``). Training: the prefixes'
    statistics and the running statistics moved (once, as the module moves them). ``synapse``, ``x``, ``quantum``:
    as :func:`~.fused_block.fused_block`'s."""
    backend = BLOCK_BACKENDS[path]
    state = torch.promote_types(cur.dtype, torch.float32)
    spec = BlockSpec(NeuronSpec.of(p), norm.eps, float(scale), False)
    neuron = NeuronTensors.of(p, cur.device, state)
    mean = var = None
    steps = cur.shape[0]
    if not norm.training:
        mean, var = (s[:steps].to(state, copy=True) for s in (norm.running_mean, norm.running_var))
    inside = synapse is not None
    call = _Call(backend, spec, norm.training, spike_synapse.conv_args(synapse) if inside else None,
                 None if quantum is None else float(quantum), x.shape if inside else None, x.dtype if inside else None,
                 last)  # fmt: skip
    spikes, mem, batch_mean, batch_var = FusedTABLeaky.apply(
        cur.detach() if inside else cur, x if inside else None, synapse.weight if inside else None, mean, var, mem0,
        neuron.beta, neuron.theta, neuron.g, norm.weight[:steps], norm.bias[:steps], norm.p[:steps], call,
    )  # fmt: skip
    if norm.training:
        count = cur[0].numel() // cur.shape[2]
        for t in range(cur.shape[0]):
            norm.record_statistics(t, batch_mean[t], batch_var[t], count * (t + 1))
    return spikes, mem
