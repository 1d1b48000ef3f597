"""The leaky scan as one autograd node, in plain torch (CPU, and any device without Triton).

Forward and backward loop over T without building a graph, a handful of ops
a step on cache-sized ``(B, ...)`` slices. Saved for backward: ``h`` (the
surrogate's argument) only; the membrane is recomputed from it
(:func:`~.scan_math.membrane_from_h`), and for the reset modes where the two
are equal the returned membrane *is* the saved ``h``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..surrogate import Surrogate
from .scan_math import ScanMode, backward_step, clamp_grad_mask, forward_step, membrane_from_h, membrane_sequence


def reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a full-size gradient down to a broadcast parameter's ``shape``."""
    lead = grad.dim() - len(shape)
    grad = grad.sum(dim=tuple(range(lead))) if lead > 0 else grad
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


def forward_scan(x_at: Callable[[int], torch.Tensor], steps: int, mem0, beta_c, theta, g: float, mode: ScanMode, out):
    """Run ``steps`` steps; ``x_at(t)`` gives step ``t``'s input ``(B, ...)``.

    ``out`` holds the result buffers ``"spk"``, ``"h"``, ``"mem"``, each ``(T, B, ...)`` or missing
    (then a one-step scratch is used: the value is not kept).
    """
    h_seq, mem_seq, spk_seq = out.get("h"), out.get("mem"), out.get("spk")
    scratch_h = None if h_seq is not None else torch.empty(mem0.shape, dtype=mem0.dtype, device=mem0.device)
    scratch_m = None if mem_seq is not None else torch.empty_like(mem0)
    scratch_s = None if spk_seq is not None else torch.empty_like(mem0)
    m = mem0
    for t in range(steps):
        h_t = h_seq[t] if h_seq is not None else scratch_h
        m_t = h_t if mem_seq is h_seq and h_seq is not None else (mem_seq[t] if mem_seq is not None else scratch_m)
        forward_step(x_at(t), m, beta_c, theta, g, mode, h_t, m_t, spk_seq[t] if spk_seq is not None else scratch_s)
        m = m_t


def backward_scan(grad_spk, grad_mem, h_seq, mem0, beta, theta, g: float, surrogate, mode, need, grad_x_at):
    """Reverse scan from the saved ``h_seq``; ``grad_x_at(t, delta_h)`` receives ``dL/dh_t`` (float32,
    a one-step buffer) and stores what it needs. ``need = (beta, theta)`` flags.

    Returns ``(grad_mem0, grad_beta, grad_theta)`` (``None`` where not needed).
    """
    need_beta, need_theta = need
    beta_c = beta.clamp(0, 1)
    mem_seq = membrane_sequence(h_seq, mem0, theta, mode) if mode.same_step_reset == "snn" else None
    delta_h = torch.empty(h_seq.shape[1:], dtype=h_seq.dtype, device=h_seq.device)
    carry = d_beta = d_theta = None
    for t in reversed(range(h_seq.shape[0])):
        if t == 0:
            m_prev = mem0
        elif mem_seq is not None:
            m_prev = mem_seq[t - 1]
        else:
            m_prev = membrane_from_h(h_seq[t - 1], None, theta, mode)
        carry, beta_t, theta_t = backward_step(
            None if grad_spk is None else grad_spk[t],
            None if grad_mem is None else grad_mem[t],
            carry,
            h_seq[t],
            m_prev,
            beta_c,
            theta,
            g,
            surrogate,
            mode,
            need_beta,
            need_theta,
            delta_h,
        )
        grad_x_at(t, delta_h)
        if need_beta:
            beta_t = reduce_to(beta_t, beta.shape)
            d_beta = beta_t if d_beta is None else d_beta + beta_t
        if need_theta:
            theta_t = reduce_to(theta_t, theta.shape)
            d_theta = theta_t if d_theta is None else d_theta + theta_t
    grad_beta = None if d_beta is None else d_beta * clamp_grad_mask(beta)
    return carry, grad_beta, d_theta


class LeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, mem0, beta, theta, g, surrogate: Surrogate, mode: ScanMode):
        # Contiguous (T, B, ...) outputs whatever the input's strides; membrane in float32,
        # spikes in the input's dtype (bf16 under autocast: exact for 0 / g).
        h_seq = torch.empty(x_seq.shape, dtype=mem0.dtype, device=x_seq.device)
        mem_seq = h_seq if mode.same_step_reset == "none" else torch.empty_like(h_seq)
        spk_seq = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
        out = dict(h=h_seq, mem=mem_seq, spk=spk_seq)
        forward_scan(x_seq.__getitem__, x_seq.shape[0], mem0, beta.clamp(0, 1), theta, float(g), mode, out)
        ctx.save_for_backward(h_seq, mem0, beta, theta, g)
        ctx.surrogate, ctx.mode, ctx.x_dtype = surrogate, mode, x_seq.dtype
        return spk_seq, mem_seq

    @staticmethod
    def backward(ctx, grad_spk, grad_mem):
        h_seq, mem0, beta, theta, g = ctx.saved_tensors
        grad_x = torch.empty(h_seq.shape, dtype=ctx.x_dtype, device=h_seq.device)
        need = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        grad_mem0, grad_beta, grad_theta = backward_scan(
            grad_spk, grad_mem, h_seq, mem0, beta, theta, float(g), ctx.surrogate, ctx.mode, need,
            lambda t, delta_h: grad_x[t].copy_(delta_h),
        )  # fmt: skip
        return grad_x, grad_mem0, grad_beta, grad_theta, None, None, None


def leaky_scan_torch(x_seq, mem0, beta, theta, g, surrogate: Surrogate, mode: ScanMode):
    """``(spk_seq, mem_seq)`` for ``x_seq`` ``(T, B, ...)`` from membrane ``mem0`` ``(B, ...)``."""
    return LeakyScan.apply(x_seq, mem0, beta, theta, g, surrogate, mode)
