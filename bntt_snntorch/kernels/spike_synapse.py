"""Convolution / linear layers on spike input that keep the input as int8 codes for backward.

A synapse's weight gradient needs its input. Between spiking layers that input
is spikes (0 or the graded factor g) or average-pooled spikes (multiples of
g / pool area): integers times a known ``quantum``. This node saves
``round(x / quantum)`` as int8 (1 byte instead of 4, or 2 under bf16 autocast)
and expands it in backward. Whether an input is such a tensor is known from the
network's structure (:func:`bntt_snntorch.layers.mark_spike_inputs`), not checked
per call: nothing is read back to the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _codes(x: torch.Tensor, quantum: float) -> torch.Tensor:
    """``round(x / quantum)`` as int8 (``x`` is integer multiples of ``quantum``, at most 127 of them)."""
    return x.to(torch.int8) if quantum == 1.0 else torch.round(x * (1.0 / quantum)).to(torch.int8)


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return torch.promote_types(x.dtype, weight.dtype)


class _SpikeSynapse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, quantum: float, conv: dict | None):
        dtype = _compute_dtype(x, weight)
        xc, wc = x.to(dtype), weight.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            y = F.conv2d(xc, wc, None, **conv) if conv is not None else F.linear(xc, wc)
        ctx.save_for_backward(_codes(xc, quantum) if ctx.needs_input_grad[1] else None, weight)
        ctx.quantum, ctx.conv, ctx.x_dtype, ctx.shape = quantum, conv, x.dtype, x.shape
        return y

    @staticmethod
    def backward(ctx, grad):
        saved, weight = ctx.saved_tensors
        wc = weight.to(grad.dtype)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            x = saved.to(grad.dtype)
            if ctx.quantum != 1.0:
                x.mul_(ctx.quantum)
        if ctx.conv is not None:
            x = x if ctx.needs_input_grad[1] else grad.new_zeros(()).expand(ctx.shape)  # sizes only
            c = ctx.conv
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, wc, None, c["stride"], c["padding"], c["dilation"], False, [0, 0], c["groups"],
                [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False],
            )  # fmt: skip
        else:
            if ctx.needs_input_grad[0]:
                grad_x = grad @ wc
            if ctx.needs_input_grad[1]:
                grad_w = grad.flatten(0, -2).T @ x.flatten(0, -2)
        grad_x = None if grad_x is None else grad_x.to(ctx.x_dtype)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        return grad_x, grad_w, None, None


def supports(synapse: nn.Module) -> bool:
    """Plain ``nn.Conv2d`` (zero padding) / ``nn.Linear`` without bias or hooks: what this node computes."""
    if synapse._forward_hooks or synapse._forward_pre_hooks or getattr(synapse, "bias", None) is not None:
        return False
    if type(synapse) is nn.Linear:
        return True
    return type(synapse) is nn.Conv2d and synapse.padding_mode == "zeros" and isinstance(synapse.padding, tuple)


def spike_synapse(synapse: nn.Module, x: torch.Tensor, quantum: float) -> torch.Tensor:
    """``synapse(x)`` for ``x`` ``(N, C, H, W)`` / ``(N, F)`` whose values are integer multiples of
    ``quantum`` (at most 127 of them; the caller knows this from the network's structure), equal in
    value and gradients, keeping ``x`` as int8 for backward."""
    conv = None
    if isinstance(synapse, nn.Conv2d):
        conv = dict(
            stride=list(synapse.stride),
            padding=list(synapse.padding),
            dilation=list(synapse.dilation),
            groups=synapse.groups,
        )
    return _SpikeSynapse.apply(x, synapse.weight, float(quantum), conv)
