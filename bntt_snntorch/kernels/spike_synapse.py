"""Convolution / linear synapses whose weight gradient takes a tensor other than their float input.

``spike_synapse``: on spike input, the input kept as int8 codes for backward. It is
:func:`synapse_value` (the output without a graph) then :func:`with_gradient` (the gradient attached):
a block computes the value first where its plan needs the output's shape, and where the block runs as one
fused node (:mod:`.fused_block`) hands both to it instead of attaching the gradient.

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
from typing import NamedTuple

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


class Packing(NamedTuple):
    """Int8 codes in ``[lo, lo + 2**bits)`` kept as ``bits`` bit planes a sample (memory "low"): ``(N, bits,
    ceil(M / 8))`` bytes for ``N`` samples of ``M`` values, ``sample`` the shape of one."""

    lo: int
    bits: int
    sample: tuple


def packing_for(codes_range: tuple[int, int] | None, sample: tuple) -> Packing | None:
    """The :class:`Packing` of codes in ``codes_range = (lo, hi)`` (None: not known, no packing)."""
    if codes_range is None:
        return None
    lo, hi = codes_range
    return Packing(lo, max(1, int(hi - lo).bit_length()), tuple(sample))


def pack_codes(codes: torch.Tensor, packing: Packing) -> torch.Tensor:
    """Int8 ``codes`` ``(N, ...)`` as :class:`Packing`'s bit planes, uint8 ``(N, bits, ceil(M / 8))``."""
    n = codes.shape[0]
    u = (codes.reshape(n, -1) if packing.lo == 0 else codes.reshape(n, -1) - packing.lo).view(torch.uint8)
    u = F.pad(u, (0, -u.shape[1] % 8)).view(n, 1, -1, 8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=codes.device)
    if packing.bits > 1:
        u = (u >> torch.arange(packing.bits, dtype=torch.uint8, device=codes.device).view(1, -1, 1, 1)) & 1
    return (u * weights).sum(-1, dtype=torch.uint8)


def unpack_codes(packed: torch.Tensor, packing: Packing) -> torch.Tensor:
    """:func:`pack_codes`' int8 codes back, ``(N, *packing.sample)``."""
    n, m = packed.shape[0], math.prod(packing.sample)
    bits = (packed.unsqueeze(-1) >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    if packing.bits > 1:
        shifts = torch.arange(packing.bits, dtype=torch.uint8, device=packed.device).view(1, -1, 1, 1)
        bits = (bits << shifts).sum(1, dtype=torch.uint8)
    u = bits.view(n, -1)[:, :m].view(torch.int8)
    return (u if packing.lo == 0 else u + packing.lo).view(n, *packing.sample)


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


def synapse_backward(grad, weight_input, weight, conv: dict | None, x_shape, x_dtype, need_x: bool):
    """``(grad_x, grad_w)`` of the synapse (``conv``: its convolution's arguments, None for a linear one) whose input
    had ``x_shape`` and ``x_dtype``: ``grad_x`` from the weight where ``need_x``, ``grad_w`` from ``weight_input``
    (what stands for the input in the weight gradient; None when no weight gradient is asked)."""
    wc = weight.to(grad.dtype)
    need_w = weight_input is not None
    grad_x = grad_w = None
    if conv is not None:
        x = weight_input if need_w else grad.new_zeros(()).expand(x_shape)  # sizes only
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, x, wc, None, conv["stride"], conv["padding"], conv["dilation"], False, [0, 0], conv["groups"],
            [need_x, need_w, False],
        )  # fmt: skip
    else:
        if need_x:
            grad_x = grad @ wc
        if need_w:
            grad_w = grad.flatten(0, -2).T @ weight_input.flatten(0, -2)
    grad_x = None if grad_x is None else grad_x.to(x_dtype)
    grad_w = None if grad_w is None else grad_w.to(weight.dtype)
    return grad_x, grad_w


def kept_input(x: torch.Tensor, quantum: float | None, dtype: torch.dtype, packing: Packing | None = None):
    """What a synapse's backward keeps of its input ``x``, in the synapse's compute ``dtype``: int8 codes where
    ``quantum`` says it is spikes (as bit planes where ``packing`` is given), else ``x`` itself."""
    x = x.to(dtype)
    if quantum is None:
        return x
    codes = _codes(x, quantum)
    return codes if packing is None else pack_codes(codes, packing)


def input_for_weight(kept: torch.Tensor, quantum: float | None, dtype: torch.dtype, packing: Packing | None = None):
    """The input back from :func:`kept_input`'s ``kept`` (bit planes where ``packing`` is given), in ``dtype``,
    for the weight gradient."""
    if quantum is None:
        return kept
    x = (kept if packing is None else unpack_codes(kept, packing)).to(dtype)
    return x.mul_(quantum) if quantum != 1.0 else x


#: The synapse's backward from int8 codes runs on chunks of the batch of about this many bytes of float input
#: (:func:`kept_backward`).
BACKWARD_CHUNK_BYTES = 8 * 2**20


def kept_backward(grad, kept, quantum: float | None, weight, conv: dict | None, x_shape, x_dtype, need_x: bool,
                  packing: Packing | None = None):  # fmt: skip
    """:func:`synapse_backward` from :func:`kept_input`'s ``kept`` (None: no weight gradient). Where ``kept`` is int8
    codes, on chunks of the batch of about :data:`BACKWARD_CHUNK_BYTES` of float input: each chunk's codes expanded
    to float on their own, its input gradient written into the whole one, its weight gradient added up. Neither the
    input's float copy nor the convolution's workspaces (oneDNN's reordered gradient and output, each as large as
    the layer's activations) then exist whole at the backward's peak. Both gradients within float rounding of one
    call's (the convolution's kernels may sum in another order for another batch size). ``packing``: ``kept`` is
    bit planes (memory "low")."""
    rows = x_shape[0]
    step = rows if kept is None or quantum is None else max(1, BACKWARD_CHUNK_BYTES // (math.prod(x_shape[1:]) * 4))
    if step >= rows:
        x = None if kept is None else input_for_weight(kept, quantum, grad.dtype, packing)
        return synapse_backward(grad, x, weight, conv, x_shape, x_dtype, need_x)
    grad_x = torch.empty(x_shape, dtype=x_dtype, device=grad.device) if need_x else None
    grad_w = None
    for start in range(0, rows, step):
        x = input_for_weight(kept[start : start + step], quantum, grad.dtype, packing)
        part_x, part_w = synapse_backward(grad[start : start + step], x, weight, conv, x.shape, x_dtype, need_x)
        if need_x:
            grad_x[start : start + step] = part_x
        grad_w = part_w if grad_w is None else grad_w.add_(part_w)
    return grad_x, grad_w


def inside_backward(grad_cur, kept, weight, call, need_x: bool):
    """A fused node's gradients through the synapse inside it: ``(None, grad_x, grad_w)`` from ``dL/dcurrent``
    ``(T, B, ...)`` where the node holds the synapse (``weight`` given; ``call``: the node's static part, with
    ``quantum``, ``conv``, ``x_shape``, ``x_dtype`` and ``packing``), else ``(grad_cur, None, None)``: its own graph
    carries it."""
    if weight is None:
        return grad_cur, None, None
    grad_x, grad_w = kept_backward(grad_cur.flatten(0, 1), kept, call.quantum, weight, call.conv, call.x_shape,
                                   call.x_dtype, need_x, getattr(call, "packing", None))  # fmt: skip
    return None, grad_x, grad_w


def recompute(kept: torch.Tensor, quantum: float | None, weight: torch.Tensor, conv: dict | None, dtype,
              packing: Packing | None = None) -> torch.Tensor:  # fmt: skip
    """The synapse's output again from :func:`kept_input`'s ``kept``, in the compute ``dtype`` the forward ran in:
    the forward's operation on the same values (spike codes times a power-of-two quantum are exact), so bit for
    bit :func:`synapse_value`'s."""
    with torch.no_grad():
        return _synapse_op(input_for_weight(kept, quantum, dtype, packing), weight.to(dtype), conv)


class _SynapseGradient(torch.autograd.Function):
    """``value`` (the synapse's output, computed without a graph) forward; backward, the synapse's
    gradients, its input kept as :func:`kept_input` keeps it."""

    @staticmethod
    def forward(ctx, x, weight, value, quantum: float | None, conv: dict | None):
        ctx.save_for_backward(kept_input(x, quantum, value.dtype) if ctx.needs_input_grad[1] else None, weight)
        ctx.quantum, ctx.conv, ctx.x_dtype, ctx.shape = quantum, conv, x.dtype, x.shape
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        kept, weight = ctx.saved_tensors
        grads = kept_backward(
            grad, kept, ctx.quantum, weight, ctx.conv, ctx.shape, ctx.x_dtype, ctx.needs_input_grad[0]
        )
        return (*grads, None, None, None)


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
        grad_x, grad_w = synapse_backward(grad, None if trace is None else trace.to(grad.dtype), weight, ctx.conv,
                                          ctx.shape, ctx.x_dtype, ctx.needs_input_grad[0])  # fmt: skip
        return grad_x, None, grad_w, None


def supports(synapse: nn.Module) -> bool:
    """Plain ``nn.Conv2d`` (zero padding) / ``nn.Linear`` without bias or hooks: what this node computes."""
    if synapse._forward_hooks or synapse._forward_pre_hooks or getattr(synapse, "bias", None) is not None:
        return False
    if type(synapse) is nn.Linear:
        return True
    return type(synapse) is nn.Conv2d and synapse.padding_mode == "zeros" and isinstance(synapse.padding, tuple)


def conv_args(synapse: nn.Module) -> dict | None:
    """The convolution's arguments of a Conv2d synapse; None for a Linear one."""
    if not isinstance(synapse, nn.Conv2d):
        return None
    return dict(
        stride=list(synapse.stride),
        padding=list(synapse.padding),
        dilation=list(synapse.dilation),
        groups=synapse.groups,
    )


def synapse_value(synapse: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``synapse(x)`` without a graph, in the synapse's compute dtype (autocast's where it is on), for a
    synapse :func:`supports`; :func:`with_gradient` attaches its gradient after."""
    with torch.no_grad():
        return _synapse(x, synapse.weight, conv_args(synapse))


def with_gradient(synapse: nn.Module, x: torch.Tensor, value: torch.Tensor, quantum: float | None) -> torch.Tensor:
    """``value`` (:func:`synapse_value` of ``x``) with the synapse's gradients w.r.t. ``x`` and its weight;
    ``x`` kept for backward as int8 codes where ``quantum`` says it is integer multiples of it (spikes),
    else as it is."""
    return _SynapseGradient.apply(x, synapse.weight, value, None if quantum is None else float(quantum),
                                  conv_args(synapse))  # fmt: skip


def spike_synapse(synapse: nn.Module, x: torch.Tensor, quantum: float) -> torch.Tensor:
    """``synapse(x)`` for ``x`` ``(N, C, H, W)`` / ``(N, F)`` whose values are integer multiples of
    ``quantum`` (at most 127 of them; the caller knows this from the network's structure), equal in
    value and gradients, keeping ``x`` as int8 for backward."""
    return with_gradient(synapse, x, synapse_value(synapse, x), quantum)


def trace_synapse(synapse: nn.Module, x: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    """``synapse(x)`` for ``x`` ``(N, C, H, W)`` / ``(N, F)`` with OTTT's weight gradient: taken with ``trace``
    (the same shape as ``x``) in place of ``x``; the gradient w.r.t. ``x`` is the synapse's own, and
    ``trace`` gets none. One forward of the synapse (:func:`supports` says which synapses)."""
    return _TraceSynapse.apply(x, trace, synapse.weight, conv_args(synapse))
