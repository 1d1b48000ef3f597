"""BNTT's normalise-and-scale fused into the leaky scan: one autograd node that keeps only the synapse output.

For a BNTT layer followed by a leaky neuron, the multi-step path would keep
the synapse output (for batch norm's backward), the normalised current and
the neuron's ``h`` and membrane, each full size. Here step ``t`` is
normalised on the fly (``x_hat`` is never materialised) and fed to the scan;
backward recomputes the normalised current and ``h`` from the saved synapse
output and the per-(t, c) mean / rstd, walks the reverse scan, and turns
``dL/dcurrent`` into batch norm's input and gamma gradients step by step::

    current_t = s * gamma_t * (x_t - mean_t) / sqrt(var_t + eps)     (per channel)

(``s`` is the block's input scale, folded into gamma). Each step runs
batch norm's own kernels (normalise with given statistics; its backward
with the saved mean / rstd), so values round as the per-step reference's
do, bf16 included. Saved: ``x`` in its own dtype (bf16 under autocast) plus
``(T, C)`` statistics, all through ``ctx.save_for_backward``.
"""

from __future__ import annotations

import torch

from ..functional import LeakyParams
from ..surrogate import Surrogate
from .scan_math import ScanMode
from .torch_scan import backward_scan, forward_scan


def _scaled_weight(weight, channels: int, scale: float, like: torch.Tensor):
    """Per-step batch-norm weights ``(T, C)`` with the block's input scale folded in (``None`` for 1)."""
    if weight is None:
        return None if scale == 1.0 else torch.full((like.shape[0], channels), scale, device=like.device)
    return weight if scale == 1.0 else weight * scale


def _currents(x_seq, weight, mean, var, eps: float):
    """``t -> current_t`` ``(B, C, ...)``: batch norm of step ``t`` with the given statistics, in
    ``x_seq``'s dtype (bf16 under autocast, as the per-step batch norm's output)."""

    def current_at(t):
        return torch.batch_norm(
            x_seq[t], None if weight is None else weight[t], None, mean[t], var[t], False, 0.0, eps, False
        )

    return current_at


class BNTTLeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, weight, mean, var, beta, theta, g, eps, scale, training, surrogate, mode):
        w = _scaled_weight(weight, x_seq.shape[2], scale, mean)
        mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
        spk_seq = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
        current_at = _currents(x_seq, w, mean, var, eps)
        forward_scan(current_at, x_seq.shape[0], mem0, beta.clamp(0, 1), theta, float(g), mode, dict(spk=spk_seq))
        ctx.save_for_backward(x_seq, weight, mean, var, beta, theta, g)
        ctx.eps, ctx.scale, ctx.training, ctx.surrogate, ctx.mode = eps, scale, training, surrogate, mode
        return spk_seq

    @staticmethod
    def backward(ctx, grad_spk):
        x_seq, weight, mean, var, beta, theta, g = ctx.saved_tensors
        w = _scaled_weight(weight, x_seq.shape[2], ctx.scale, mean)
        mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
        h_seq = torch.empty(x_seq.shape, dtype=torch.float32, device=x_seq.device)
        current_at = _currents(x_seq, w, mean, var, ctx.eps)
        forward_scan(current_at, x_seq.shape[0], mem0, beta.clamp(0, 1), theta, float(g), ctx.mode, dict(h=h_seq))

        rstd = torch.rsqrt(var + ctx.eps)
        need_weight = weight is not None and ctx.needs_input_grad[1]
        grad_x = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
        grad_weight = torch.empty_like(mean) if need_weight else None

        def grad_x_at(t, dcur):
            gx, gw, _ = torch.ops.aten.native_batch_norm_backward(
                dcur.to(x_seq.dtype), x_seq[t], None if w is None else w[t], mean[t], var[t], mean[t], rstd[t],
                ctx.training, ctx.eps, [True, need_weight, False],
            )  # fmt: skip
            grad_x[t].copy_(gx)
            if need_weight:
                grad_weight[t] = gw * ctx.scale

        need = ctx.needs_input_grad[4], ctx.needs_input_grad[5]
        _, grad_beta, grad_theta = backward_scan(
            grad_spk, None, h_seq, mem0, beta, theta, float(g), ctx.surrogate, ctx.mode, need, grad_x_at
        )
        return grad_x, grad_weight, None, None, grad_beta, grad_theta, None, None, None, None, None, None


@torch.compiler.disable  # one opaque call under torch.compile, as the plain scans
def bntt_leaky_scan(
    x_seq: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor,
    var: torch.Tensor,
    p: LeakyParams,
    eps: float = 1e-5,
    scale: float = 1.0,
    training: bool = True,
) -> torch.Tensor:
    """Spikes ``(T, B, C, ...)`` of a leaky layer driven by ``scale * BNTT(x_seq)``, from zero membrane.

    ``weight`` ``(T, C)`` (the per-step gammas, or ``None`` for ``affine=False``); ``mean``, ``var``
    ``(T, C)`` float32: the statistics the normalisation uses (the batch's biased variance in
    training, whose dependence on ``x_seq`` backward accounts for; the running ones in eval). The neuron must
    be fusable (:func:`bntt_snntorch.kernels.select_backend` not ``"reference"``).
    """
    if not isinstance(p.spike_grad, Surrogate):
        raise ValueError(f"bntt_leaky_scan needs a bntt_snntorch.surrogate spike_grad, got {p.spike_grad!r}")
    g = torch.as_tensor(p.graded_spikes_factor, dtype=torch.float32, device=x_seq.device)
    mode = ScanMode.from_params(p)
    return BNTTLeakyScan.apply(
        x_seq, weight, mean, var, p.beta.float(), p.threshold.float(), g, eps, float(scale), training, p.spike_grad,
        mode,
    )  # fmt: skip
