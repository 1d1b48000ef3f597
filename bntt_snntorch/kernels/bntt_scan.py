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

import os
import warnings

import torch

from ..functional import LeakyParams
from ..surrogate import Surrogate
from . import compiled_steps
from .scan_math import ScanMode, clamp_grad_mask
from .torch_scan import backward_scan, forward_scan


def _per_channel(v: torch.Tensor, step_dim: int) -> torch.Tensor:
    """``(T, C)`` -> ``(T, C, 1, ...)``: broadcastable against one step ``(B, C, ...)`` at index ``t``."""
    return v.view(*v.shape, *([1] * (step_dim - 2)))


def _invstd(var: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(var + eps)`` rounded as batch norm's CPU kernel does (double, then float), so a
    compiled normalisation ``x * (invstd * w) - mean * (invstd * w)`` equals ``torch.batch_norm``'s."""
    return (1 / torch.sqrt(var.double() + eps)).float()


def _coefficients(w, var, eps: float):
    """``(rstd, k)``, each ``(T, C)``: the normaliser and ``k = rstd * w`` (``w`` with the input scale)."""
    rstd = _invstd(var, eps)
    return rstd, (rstd if w is None else rstd * w.float())


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


def _compiled_forward(x_seq, w, mean, var, eps: float, beta_c, theta, g: float, mode, keep: bool):
    """The forward scan on compiled step kernels: spikes ``(T, B, ...)``, or with ``keep`` the
    per-step lists ``(h, m_prev)`` for backward."""
    step = compiled_steps.compiled("forward", (mode, x_seq.dtype, x_seq.dim()))
    _, k = _coefficients(w, var, eps)
    step_dim = x_seq.dim() - 1
    k_b, shift_b = _per_channel(k, step_dim), _per_channel(-mean * k, step_dim)
    m = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
    spk_seq = None if keep else torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
    hs, ms = [], []  # ms: the membranes, kept only where h does not determine them
    for t in range(x_seq.shape[0]):
        h, m_next = step(x_seq[t], k_b[t], shift_b[t], m, beta_c, theta, g, mode, None if keep else spk_seq[t])
        if keep:
            hs.append(h)
            ms.append(m if mode.same_step_reset == "snn" or t == 0 else None)
        m = m_next
    return (hs, ms) if keep else spk_seq


def _compiled_backward(ctx, grad_spk, x_seq, w, mean, var, beta, theta, g: float):
    """``(grad_x, sum_xhat (T, C), grad_beta, grad_theta)`` on compiled step kernels (scalar beta / theta)."""
    beta_c = beta.clamp(0, 1)
    hs, ms = _compiled_forward(x_seq, w, mean, var, ctx.eps, beta_c, theta, g, ctx.mode, keep=True)
    key = (ctx.mode, type(ctx.surrogate), ctx.training, x_seq.dtype, x_seq.dim())
    step = compiled_steps.compiled("backward", key)
    rstd, k = _coefficients(w, var, ctx.eps)
    carry = torch.zeros_like(hs[-1])
    grad_x = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
    sums, d_beta, d_theta = [], 0.0, 0.0
    for t in reversed(range(x_seq.shape[0])):
        prev_is_h = t > 0 and ms[t] is None
        prev = hs[t - 1] if prev_is_h else ms[t]
        carry, s2, beta_t, theta_t = step(
            grad_spk[t], carry, hs[t], prev, prev_is_h, x_seq[t], mean[t], rstd[t], k[t], beta_c, theta, g,
            ctx.surrogate, ctx.mode, ctx.training, grad_x[t],
        )  # fmt: skip
        hs[t] = ms[t] = None  # free as we go
        sums.append(s2)
        d_beta, d_theta = d_beta + beta_t, d_theta + theta_t
    grad_beta = (d_beta * clamp_grad_mask(beta)).reshape(beta.shape)
    return grad_x, torch.stack(sums[::-1]), grad_beta, d_theta.reshape(theta.shape)


class BNTTLeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, weight, mean, var, beta, theta, g, eps, scale, training, surrogate, mode, use_compiled):
        w = _scaled_weight(weight, x_seq.shape[2], scale, mean)
        ctx.save_for_backward(x_seq, weight, mean, var, beta, theta, g)
        ctx.eps, ctx.scale, ctx.training, ctx.surrogate, ctx.mode = eps, scale, training, surrogate, mode
        ctx.use_compiled = use_compiled
        if use_compiled:
            try:
                return _compiled_forward(x_seq, w, mean, var, eps, beta.clamp(0, 1), theta, float(g), mode, keep=False)
            except Exception as err:  # e.g. no C++ compiler: the eager steps compute the same
                _disable_compiled(err)
                ctx.use_compiled = False
        mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
        spk_seq = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
        current_at = _currents(x_seq, w, mean, var, eps)
        forward_scan(current_at, x_seq.shape[0], mem0, beta.clamp(0, 1), theta, float(g), mode, dict(spk=spk_seq))
        return spk_seq

    @staticmethod
    def backward(ctx, grad_spk):
        x_seq, weight, mean, var, beta, theta, g = ctx.saved_tensors
        w = _scaled_weight(weight, x_seq.shape[2], ctx.scale, mean)
        need_weight = weight is not None and ctx.needs_input_grad[1]
        if ctx.use_compiled and not _COMPILED_BROKEN:
            try:
                grad_x, sum_xhat, grad_beta, grad_theta = _compiled_backward(
                    ctx, grad_spk, x_seq, w, mean, var, beta, theta, float(g)
                )
                grad_weight = sum_xhat * ctx.scale if need_weight else None
                return grad_x, grad_weight, None, None, grad_beta, grad_theta, None, None, None, None, None, None, None
            except Exception as err:
                _disable_compiled(err)
        mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device)
        h_seq = torch.empty(x_seq.shape, dtype=torch.float32, device=x_seq.device)
        current_at = _currents(x_seq, w, mean, var, ctx.eps)
        forward_scan(current_at, x_seq.shape[0], mem0, beta.clamp(0, 1), theta, float(g), ctx.mode, dict(h=h_seq))

        rstd = _invstd(var, ctx.eps)
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
        return grad_x, grad_weight, None, None, grad_beta, grad_theta, None, None, None, None, None, None, None


COMPILE_MIN_NEURONS = 1 << 17


_COMPILED_BROKEN: list[str] = []


def _disable_compiled(err: Exception) -> None:
    """After a compile failure the eager steps run for the rest of the process (warned once)."""
    if not _COMPILED_BROKEN:
        warnings.warn(
            f"compiling the BNTT step kernels failed ({type(err).__name__}: {str(err)[:200]}); running them "
            "eagerly (same results, slower). Set BNTT_COMPILED_KERNELS=0 to skip the attempt.",
            stacklevel=4,
        )
    _COMPILED_BROKEN.append(repr(err))


def use_compiled_kernels(step: torch.Tensor) -> bool:
    """Compiled kernels for a CPU tensor of at least ``COMPILE_MIN_NEURONS`` elements (one step),
    unless ``BNTT_COMPILED_KERNELS=0`` (never) / ``=1`` (any size) or a compile failed before."""
    setting = os.environ.get("BNTT_COMPILED_KERNELS", "auto")
    if setting == "0" or _COMPILED_BROKEN or step.device.type != "cpu":
        return False
    return setting == "1" or step.numel() >= COMPILE_MIN_NEURONS


def _use_compiled(x_seq: torch.Tensor, p: LeakyParams) -> bool:
    """Compiled step kernels for large CPU layers with scalar beta / threshold; eager steps otherwise."""
    return p.beta.numel() == 1 and p.threshold.numel() == 1 and use_compiled_kernels(x_seq[0])


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
        mode, _use_compiled(x_seq, p),
    )  # fmt: skip
