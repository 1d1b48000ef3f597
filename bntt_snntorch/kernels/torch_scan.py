"""The leaky scan as one autograd node in plain torch (CPU, and any device without Triton).

Forward and backward loop over T without building a graph, a handful of ops a step on cache-sized
``(B, ...)`` slices written into preallocated buffers (:mod:`.torch_steps`, bound to the neuron
definition by tests). Saved for backward: ``h`` (the surrogate's argument) only; the membrane is
recomputed from it (:func:`membrane_sequence`), and for the variants where the two are equal the
returned membrane *is* ``h``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import definition as D
from ..definition import Variant
from ..surrogate import Surrogate
from .torch_steps import backward_into, forward_into


@dataclass(frozen=True)
class NeuronSpec:
    """The static part of a leaky layer a kernel is specialised for: its variant and surrogate, and
    ``unit_spikes``: whether the graded-spikes factor is the number 1 (known without reading a tensor;
    the eager steps then skip the multiplication)."""

    variant: Variant
    surrogate: Surrogate
    unit_spikes: bool = False

    @classmethod
    def of(cls, p) -> NeuronSpec:
        """The spec of neuron parameters ``p`` (a :class:`~bntt_snntorch.functional.LeakyParams`)."""
        g = p.graded_spikes_factor
        unit = isinstance(g, (int, float)) and g == 1
        return cls(Variant.of(p.reset_mechanism, p.reset_delay, p.detach_reset), p.spike_grad, unit)


@dataclass(frozen=True)
class NeuronTensors:
    """A leaky layer's parameters as the kernels take them: float32 ``beta`` (unclamped: its gradient
    is masked where the clamp to [0, 1] cuts), ``theta`` and the graded-spikes factor ``g``."""

    beta: torch.Tensor
    theta: torch.Tensor
    g: torch.Tensor

    @classmethod
    def of(cls, p, device: torch.device, dtype: torch.dtype = torch.float32) -> NeuronTensors:
        g = torch.as_tensor(p.graded_spikes_factor, dtype=dtype, device=device)
        return cls(p.beta.to(dtype), p.threshold.to(dtype), g)


def params_tensor(tensors: NeuronTensors) -> torch.Tensor:
    """``[beta, theta, g]`` as one float32 tensor (differentiable in beta and theta): what the fused loops
    (Triton and C) take."""
    return torch.stack([tensors.beta.reshape(()), tensors.theta.reshape(()), tensors.g.reshape(())]).float()


def reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a full-size gradient down to a broadcast parameter's ``shape``."""
    lead = grad.dim() - len(shape)
    grad = grad.sum(dim=tuple(range(lead))) if lead > 0 else grad
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


def membrane_sequence(h_seq: torch.Tensor, mem0: torch.Tensor, theta, variant: Variant) -> torch.Tensor:
    """All membranes ``(T, B, ...)`` recomputed from ``h_seq`` and the initial membrane ``mem0``
    (``h_seq`` itself for variants without a same-step reset)."""
    RESET, DELAYED, SAME = variant.codes
    if SAME == 0:
        return h_seq
    if SAME == 2:  # the detached reset needs this step's h only
        return D.membrane_after(h_seq, D.fire(h_seq, theta), 0.0, theta, RESET, SAME)
    mems, m = [], mem0
    for h in h_seq:
        m = D.membrane_after(h, D.fire(h, theta), D.previous_reset(m, theta, DELAYED, SAME), theta, RESET, SAME)
        mems.append(m)
    return torch.stack(mems)


def forward_scan(
    x_at: Callable[[int], torch.Tensor], num_steps: int, mem0, tensors: NeuronTensors, spec: NeuronSpec, out
):
    """Run ``num_steps`` steps from ``mem0``; ``x_at(t)`` gives step ``t``'s input ``(B, ...)``. ``out``
    holds ``(T, B, ...)`` buffers ``"spk"`` / ``"h"`` / ``"mem"`` to fill (each optional: a one-step
    scratch stands in). Returns the last membrane."""
    codes, g = spec.variant.codes, None if spec.unit_spikes else tensors.g
    beta = D.clamp_leak(tensors.beta)
    h_seq, mem_seq, spk_seq = out.get("h"), out.get("mem"), out.get("spk")
    scratch = {k: torch.empty_like(mem0) for k in ("h", "mem", "spk") if out.get(k) is None}
    m = mem0
    for t in range(num_steps):
        h = h_seq[t] if h_seq is not None else scratch["h"]
        if mem_seq is not None:
            m_out = mem_seq[t]
        else:  # the membrane must not overwrite the one this step reads
            m_out = scratch["mem"] if m is not scratch["mem"] else torch.empty_like(mem0)
        spk = spk_seq[t] if spk_seq is not None else scratch["spk"]
        forward_into(x_at(t), m, beta, tensors.theta, g, codes, h, m_out, spk)
        m = m_out
    return m


def backward_scan(grad_spk, grad_mem, h_seq, mem0, tensors: NeuronTensors, spec: NeuronSpec, need, grad_x_at,
                  through_time: bool = True):  # fmt: skip
    """Reverse scan from the saved ``h_seq``; ``grad_x_at(t, delta_h)`` receives ``dL/dh_t`` (the state's
    dtype, a one-step buffer) and stores what it needs. ``need = (beta, theta)`` flags; ``through_time=False``:
    no gradient carried from step t + 1 to step t (the online rules).

    Returns ``(grad_mem0, leak term, threshold term)``: the leak's of the clamped leak (its clamp's mask is the
    caller's), each in its parameter's shape (``None`` where not needed)."""
    beta, theta, g = D.clamp_leak(tensors.beta), tensors.theta, None if spec.unit_spikes else tensors.g
    _, DELAYED, SAME = spec.variant.codes
    # the previous membrane enters a reverse step only through its reset (delayed or snnTorch's) or the leak term
    mem_seq = membrane_sequence(h_seq, mem0, theta, spec.variant) if DELAYED or SAME == 1 or need[0] else None
    delta_h = torch.empty_like(h_seq[0])
    carry, d_beta, d_theta = None, None, None
    for t in reversed(range(h_seq.shape[0])):
        h, m_prev = h_seq[t], None if mem_seq is None else (mem0 if t == 0 else mem_seq[t - 1])
        carry = carry if through_time else None
        delta_m = carry if grad_mem is None else (grad_mem[t] if carry is None else grad_mem[t] + carry)
        slope = spec.surrogate.derivative(h - theta)
        carry, beta_t, theta_t = backward_into(
            None if grad_spk is None else grad_spk[t], delta_m, h, m_prev, beta, theta, g, slope,
            spec.variant.codes, need, delta_h,
        )  # fmt: skip
        grad_x_at(t, delta_h)
        if need[0]:
            beta_t = reduce_to(beta_t, tensors.beta.shape)
            d_beta = beta_t if d_beta is None else d_beta + beta_t
        if need[1]:
            theta_t = reduce_to(theta_t, tensors.theta.shape)
            d_theta = theta_t if d_theta is None else d_theta + theta_t
    return carry, d_beta, d_theta


class LeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, mem0, beta, theta, g, spec: NeuronSpec):
        # Contiguous (T, B, ...) outputs whatever the input's strides; membrane in the state's dtype,
        # spikes in the input's dtype (bf16 under autocast: exact for 0 / g).
        h_seq = torch.empty(x_seq.shape, dtype=mem0.dtype, device=x_seq.device)
        mem_seq = h_seq if spec.variant.same_step_reset == "none" else torch.empty_like(h_seq)
        out = dict(h=h_seq, mem=mem_seq, spk=torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device))
        forward_scan(x_seq.__getitem__, x_seq.shape[0], mem0, NeuronTensors(beta, theta, g), spec, out)
        ctx.save_for_backward(h_seq, mem0, beta, theta, g)
        ctx.spec, ctx.x_dtype = spec, x_seq.dtype
        return out["spk"], mem_seq

    @staticmethod
    def backward(ctx, grad_spk, grad_mem):
        h_seq, mem0, beta, theta, g = ctx.saved_tensors
        grad_x = torch.empty(h_seq.shape, dtype=ctx.x_dtype, device=h_seq.device)
        need = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        grad_mem0, grad_beta, grad_theta = backward_scan(
            grad_spk, grad_mem, h_seq, mem0, NeuronTensors(beta, theta, g), ctx.spec, need,
            lambda t, delta_h: grad_x[t].copy_(delta_h),
        )  # fmt: skip
        grad_beta = None if grad_beta is None else grad_beta * D.leak_gradient_mask(beta)
        if grad_mem0 is None:
            grad_mem0 = torch.zeros_like(mem0)
        return grad_x, grad_mem0, grad_beta, grad_theta, None, None


def leaky_scan_torch(x_seq: torch.Tensor, mem0: torch.Tensor, tensors: NeuronTensors, spec: NeuronSpec):
    """``(spk_seq, mem_seq)`` for ``x_seq`` ``(T, B, ...)`` from membrane ``mem0`` ``(B, ...)``."""
    return LeakyScan.apply(x_seq, mem0, tensors.beta, tensors.theta, tensors.g, spec)
