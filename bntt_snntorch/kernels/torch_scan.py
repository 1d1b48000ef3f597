"""The leaky scan as one autograd node, in plain torch (CPU, and any device without Triton).

Forward and backward loop over T without building a graph, a handful of ops
a step on cache-sized ``(B, ...)`` slices. Saved for backward: ``h`` (the
surrogate's argument) and the membrane, not the intermediates autograd keeps.
"""

from __future__ import annotations

import torch

from ..surrogate import Surrogate
from .scan_math import ScanMode, backward_step, clamp_grad_mask, forward_step


def _reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a full-size gradient down to a broadcast parameter's ``shape``."""
    lead = grad.dim() - len(shape)
    grad = grad.sum(dim=tuple(range(lead))) if lead > 0 else grad
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


class LeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, mem0, beta, theta, g, surrogate: Surrogate, mode: ScanMode):
        beta_c = beta.clamp(0, 1)
        # Contiguous (T, B, ...) outputs whatever the input's strides; membrane in float32,
        # spikes in the input's dtype (bf16 under autocast: exact for 0 / g).
        h_seq = torch.empty(x_seq.shape, dtype=mem0.dtype, device=x_seq.device)
        mem_seq = torch.empty_like(h_seq)
        spk_seq = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
        m, g_value = mem0, float(g)
        for t in range(x_seq.shape[0]):
            forward_step(x_seq[t], m, beta_c, theta, g_value, mode, h_seq[t], mem_seq[t], spk_seq[t])
            m = mem_seq[t]
        ctx.save_for_backward(h_seq, mem_seq, mem0, beta, theta, g)
        ctx.surrogate, ctx.mode, ctx.x_dtype = surrogate, mode, x_seq.dtype
        return spk_seq, mem_seq

    @staticmethod
    def backward(ctx, grad_spk, grad_mem):
        h_seq, mem_seq, mem0, beta, theta, g = ctx.saved_tensors
        need_beta, need_theta = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
        beta_c = beta.clamp(0, 1)
        grad_x = torch.empty(h_seq.shape, dtype=ctx.x_dtype, device=h_seq.device)
        carry = d_beta = d_theta = None
        g_value = float(g)
        for t in reversed(range(h_seq.shape[0])):
            m_prev = mem_seq[t - 1] if t > 0 else mem0
            carry, beta_t, theta_t = backward_step(
                None if grad_spk is None else grad_spk[t],
                None if grad_mem is None else grad_mem[t],
                carry,
                h_seq[t],
                m_prev,
                beta_c,
                theta,
                g_value,
                ctx.surrogate,
                ctx.mode,
                need_beta,
                need_theta,
                grad_x[t],
            )
            if need_beta:
                beta_t = _reduce_to(beta_t, beta.shape)
                d_beta = beta_t if d_beta is None else d_beta + beta_t
            if need_theta:
                theta_t = _reduce_to(theta_t, theta.shape)
                d_theta = theta_t if d_theta is None else d_theta + theta_t
        grad_mem0 = carry
        grad_beta = None if d_beta is None else d_beta * clamp_grad_mask(beta)
        return grad_x, grad_mem0, grad_beta, d_theta, None, None, None


def leaky_scan_torch(x_seq, mem0, beta, theta, g, surrogate: Surrogate, mode: ScanMode):
    """``(spk_seq, mem_seq)`` for ``x_seq`` ``(T, B, ...)`` from membrane ``mem0`` ``(B, ...)``."""
    return LeakyScan.apply(x_seq, mem0, beta, theta, g, surrogate, mode)
