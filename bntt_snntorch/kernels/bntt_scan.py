"""BNTT's normalise-and-scale fused into the leaky scan: one autograd node that keeps only the synapse output.

For a BNTT layer followed by a leaky neuron, the multi-step path would keep
the synapse output (for batch norm's backward), the normalised current and
the neuron's ``h`` and membrane, each full size. Here step ``t`` is
normalised on the fly (``x_hat`` is never materialised) and fed to the scan;
backward recomputes the normalised current and ``h`` from the saved synapse
output and the per-(t, c) mean / rstd, walks the reverse scan, and turns
``dL/dcurrent`` into batch norm's input and gamma gradients step by step::

    current_t = s * gamma_t * rstd_t * (x_t - mean_t)          (per channel c)
    dx_t = k1 * dcurrent_t + k2 * x_t + k3,   k1 = s * gamma_t * rstd_t, ...

(``s`` is the block's input scale). Saved: ``x`` in its own dtype (bf16 under
autocast) plus ``(T, C)`` statistics, all through ``ctx.save_for_backward``.
"""

from __future__ import annotations

import torch

from ..functional import LeakyParams
from ..surrogate import Surrogate
from .scan_math import ScanMode
from .torch_scan import backward_scan, forward_scan


def _per_channel(v: torch.Tensor, step_dim: int) -> torch.Tensor:
    """``(T, C)`` -> ``(T, C, 1, ...)``, ``(C,)`` -> ``(C, 1, ...)``: broadcastable against one step."""
    return v.view(*v.shape, *([1] * (step_dim - 2)))


def _coefficients(weight, rstd, scale: float):
    """``k = s * gamma * rstd`` ``(T, C)``: ``current = k * (x - mean)``."""
    return rstd * scale if weight is None else weight.float() * rstd * scale


def _current(x_seq, k_t, shift_t, mem0):
    """``t -> current_t`` ``(B, C, ...)`` in one-step scratch buffers. Computed in float32 and, for a
    low-precision ``x_seq`` (bf16 autocast), rounded to its dtype as batch norm's output is."""
    current = torch.empty_like(mem0)
    low = None if x_seq.dtype == current.dtype else torch.empty(current.shape, dtype=x_seq.dtype, device=x_seq.device)

    def current_at(t):
        torch.addcmul(shift_t[t], x_seq[t], k_t[t], out=current)
        return current if low is None else low.copy_(current)

    return current_at


class BNTTLeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, weight, mean, rstd, beta, theta, g, scale, training, surrogate, mode):
        step_dim = x_seq.dim() - 1
        k = _coefficients(weight, rstd, scale)
        k_t, shift_t = _per_channel(k, step_dim), _per_channel(-mean * k, step_dim)
        mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
        spk_seq = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
        current_at = _current(x_seq, k_t, shift_t, mem0)

        forward_scan(current_at, x_seq.shape[0], mem0, beta.clamp(0, 1), theta, float(g), mode, dict(spk=spk_seq))
        ctx.save_for_backward(x_seq, weight, mean, rstd, beta, theta, g)
        ctx.scale, ctx.training, ctx.surrogate, ctx.mode = scale, training, surrogate, mode
        return spk_seq

    @staticmethod
    def backward(ctx, grad_spk):
        x_seq, weight, mean, rstd, beta, theta, g = ctx.saved_tensors
        T, step_dim = x_seq.shape[0], x_seq.dim() - 1
        k = _coefficients(weight, rstd, ctx.scale)
        k_t, shift_t = _per_channel(k, step_dim), _per_channel(-mean * k, step_dim)
        mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
        h_seq = torch.empty(x_seq.shape, dtype=torch.float32, device=x_seq.device)
        current_at = _current(x_seq, k_t, shift_t, mem0)
        forward_scan(current_at, T, mem0, beta.clamp(0, 1), theta, float(g), ctx.mode, dict(h=h_seq))

        dims = (0, *range(2, step_dim))
        n = x_seq[0].numel() / x_seq.shape[2]
        grad_x = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
        sum_xhat = torch.empty_like(mean)  # sum over (B, ...) of dcurrent * x_hat, per (t, c)

        def grad_x_at(t, dcur):
            x_t = x_seq[t]
            s1 = dcur.sum(dims)
            s2 = rstd[t] * ((dcur * x_t).sum(dims) - mean[t] * s1)
            sum_xhat[t] = s2
            if not ctx.training:
                torch.mul(dcur, k_t[t], out=grad_x[t])
                return
            k2 = -k[t] * rstd[t] * s2 / n
            k3 = -k[t] * s1 / n - k2 * mean[t]
            dcur.mul_(k_t[t]).add_(_per_channel(k3, step_dim)).addcmul_(x_t, _per_channel(k2, step_dim))
            grad_x[t].copy_(dcur)

        need = ctx.needs_input_grad[4], ctx.needs_input_grad[5]
        _, grad_beta, grad_theta = backward_scan(
            grad_spk, None, h_seq, mem0, beta, theta, float(g), ctx.surrogate, ctx.mode, need, grad_x_at
        )
        grad_weight = sum_xhat * ctx.scale if weight is not None and ctx.needs_input_grad[1] else None
        return grad_x, grad_weight, None, None, grad_beta, grad_theta, None, None, None, None, None


def bntt_leaky_scan(
    x_seq: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    p: LeakyParams,
    scale: float = 1.0,
    training: bool = True,
) -> torch.Tensor:
    """Spikes ``(T, B, C, ...)`` of a leaky layer driven by ``scale * BNTT(x_seq)``, from zero membrane.

    ``weight`` ``(T, C)`` (the per-step gammas, or ``None`` for ``affine=False``); ``mean``, ``rstd``
    ``(T, C)`` float32: the statistics the normalisation uses (the batch's in training, whose
    dependence on ``x_seq`` backward accounts for; the running ones in eval). The neuron must
    be fusable (:func:`bntt_snntorch.kernels.select_backend` not ``"reference"``).
    """
    if not isinstance(p.spike_grad, Surrogate):
        raise ValueError(f"bntt_leaky_scan needs a bntt_snntorch.surrogate spike_grad, got {p.spike_grad!r}")
    g = torch.as_tensor(p.graded_spikes_factor, dtype=torch.float32, device=x_seq.device)
    mode = ScanMode.from_params(p)
    return BNTTLeakyScan.apply(
        x_seq, weight, mean, rstd, p.beta.float(), p.threshold.float(), g, float(scale), training, p.spike_grad, mode
    )
