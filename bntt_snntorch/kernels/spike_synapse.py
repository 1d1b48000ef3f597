"""Convolution / linear synapses whose weight gradient takes a tensor other than their float input.

``spike_synapse``: on spike input, the input kept as int8 codes for backward.

A synapse's weight gradient needs its input. Between spiking layers that input
is spikes (0 or the graded factor g) or average-pooled spikes (multiples of
g / pool area): integers times a known ``quantum``. This node saves
``round(x / quantum)`` as int8 (1 byte instead of 4, or 2 under bf16 autocast)
and expands it in backward. Whether an input is such a tensor is known from the
network's structure (:func:`bntt_snntorch.layers.mark_spike_inputs`), not checked
per call: nothing is read back to the host.

``trace_synapse``: OTTT's synapse, ``synapse(x)`` forward with the weight gradient taken with the
presynaptic trace of ``x`` instead of ``x`` (one convolution forward; the gradient w.r.t. ``x`` is the
module's own).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def power_of_two(value: float | None) -> float | None:
    """``value`` if it is a power of two (then every multiple up to 127 of it, divided by a power-of-two
    pool area, is exact in float32 and bfloat16), else None."""
    if value is None or value <= 0:
        return None
    mantissa, _ = math.frexp(value)
    return value if mantissa == 0.5 else None


def _codes(x: torch.Tensor, quantum: float) -> torch.Tensor:
    """``round(x / quantum)`` as int8 (``x`` is integer multiples of ``quantum``, at most 127 of them). For a
    power-of-two ``quantum`` (all that :func:`bntt_snntorch.layers.mark_spike_inputs` marks) the quotient is
    exact and is not rounded: one pass less."""
    if quantum == 1.0:
        return x.to(torch.int8)
    scaled = x * (1.0 / quantum)
    return (scaled if power_of_two(quantum) else scaled.round_()).to(torch.int8)


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return torch.promote_types(x.dtype, weight.dtype)


def _synapse(x: torch.Tensor, weight: torch.Tensor, conv: dict | None) -> torch.Tensor:
    """The synapse's forward in its compute dtype (autocast's, else the inputs' promoted one)."""
    dtype = _compute_dtype(x, weight)
    xc, wc = x.to(dtype), weight.to(dtype)
    if torch.is_autocast_enabled(x.device.type):  # cast above: the op itself runs outside autocast
        with torch.autocast(x.device.type, enabled=False):
            return _synapse_op(xc, wc, conv)
    return _synapse_op(xc, wc, conv)


def _synapse_op(x: torch.Tensor, weight: torch.Tensor, conv: dict | None) -> torch.Tensor:
    return F.conv2d(x, weight, None, **conv) if conv is not None else F.linear(x, weight)


def _synapse_backward(ctx, grad, weight_input, weight):
    """``(grad_x, grad_w)`` of the synapse: ``grad_x`` from the weight, ``grad_w`` from ``weight_input``
    (what stands for the input in the weight gradient; None when no weight gradient is asked)."""
    wc = weight.to(grad.dtype)
    need_x, need_w = ctx.needs_input_grad[0], weight_input is not None
    grad_x = grad_w = None
    if ctx.conv is not None:
        x = weight_input if need_w else grad.new_zeros(()).expand(ctx.shape)  # sizes only
        c = ctx.conv
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, x, wc, None, c["stride"], c["padding"], c["dilation"], False, [0, 0], c["groups"],
            [need_x, need_w, False],
        )  # fmt: skip
    else:
        if need_x:
            grad_x = grad @ wc
        if need_w:
            grad_w = grad.flatten(0, -2).T @ weight_input.flatten(0, -2)
    grad_x = None if grad_x is None else grad_x.to(ctx.x_dtype)
    grad_w = None if grad_w is None else grad_w.to(weight.dtype)
    return grad_x, grad_w


class _SpikeSynapse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, quantum: float, conv: dict | None):
        y = _synapse(x, weight, conv)
        ctx.save_for_backward(_codes(x.to(y.dtype), quantum) if ctx.needs_input_grad[1] else None, weight)
        ctx.quantum, ctx.conv, ctx.x_dtype, ctx.shape = quantum, conv, x.dtype, x.shape
        return y

    @staticmethod
    def backward(ctx, grad):
        codes, weight = ctx.saved_tensors
        x = None
        if codes is not None:
            x = codes.to(grad.dtype)
            if ctx.quantum != 1.0:
                x.mul_(ctx.quantum)
        return (*_synapse_backward(ctx, grad, x, weight), None, None)


class _TraceSynapse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, trace, weight, conv: dict | None):
        y = _synapse(x, weight, conv)
        ctx.save_for_backward(trace.to(y.dtype) if ctx.needs_input_grad[2] else None, weight)
        ctx.conv, ctx.x_dtype, ctx.shape = conv, x.dtype, x.shape
        return y

    @staticmethod
    def backward(ctx, grad):
        trace, weight = ctx.saved_tensors
        grad_x, grad_w = _synapse_backward(ctx, grad, None if trace is None else trace.to(grad.dtype), weight)
        return grad_x, None, grad_w, None


def supports(synapse: nn.Module) -> bool:
    """Plain ``nn.Conv2d`` (zero padding) / ``nn.Linear`` without bias or hooks: what this node computes."""
    if synapse._forward_hooks or synapse._forward_pre_hooks or getattr(synapse, "bias", None) is not None:
        return False
    if type(synapse) is nn.Linear:
        return True
    return type(synapse) is nn.Conv2d and synapse.padding_mode == "zeros" and isinstance(synapse.padding, tuple)


def _conv_args(synapse: nn.Module) -> dict | None:
    """The convolution's arguments of a Conv2d synapse; None for a Linear one."""
    if not isinstance(synapse, nn.Conv2d):
        return None
    return dict(
        stride=list(synapse.stride),
        padding=list(synapse.padding),
        dilation=list(synapse.dilation),
        groups=synapse.groups,
    )


def spike_synapse(synapse: nn.Module, x: torch.Tensor, quantum: float) -> torch.Tensor:
    """``synapse(x)`` for ``x`` ``(N, C, H, W)`` / ``(N, F)`` whose values are integer multiples of
    ``quantum`` (at most 127 of them; the caller knows this from the network's structure), equal in
    value and gradients, keeping ``x`` as int8 for backward."""
    return _SpikeSynapse.apply(x, synapse.weight, float(quantum), _conv_args(synapse))


def trace_synapse(synapse: nn.Module, x: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    """``synapse(x)`` for ``x`` ``(N, C, H, W)`` / ``(N, F)`` with OTTT's weight gradient: taken with ``trace``
    (the same shape as ``x``) in place of ``x``; the gradient w.r.t. ``x`` is the synapse's own, and
    ``trace`` gets none. One forward of the synapse (:func:`supports` says which synapses)."""
    return _TraceSynapse.apply(x, trace, synapse.weight, _conv_args(synapse))
