"""The leaky recurrence written as forward and reverse scans, for fused kernels.

Every reset variant of :func:`bntt_snntorch.functional.leaky_step` fits one
form (``r`` is the previous step's detached reset, ``S`` this step's spike)::

    h_t = keep_t * beta * m_{t-1} + x_t - [snnTorch subtract] r_t * theta
    S_t = H(h_t - theta),           spk_t = g * S_t
    m_t = post(h_t, S_t, r_t)

with ``keep_t = 1 - r_t`` for snnTorch's zero reset and 1 otherwise.
Backward, with ``A_t = dm_t/dh_t`` and ``C_t = keep_t * beta``::

    dL/dh_t = A_t * (dL/dm_t) + g * slope_t * dL/dspk_t
    dL/dm_t = grad_mem_t + C_{t+1} * dL/dh_{t+1}

Only ``h`` (the surrogate's argument) is kept from the forward: the membrane
is a function of ``h`` (and, for snnTorch's same-step reset, of the previous
membrane), recomputed by :func:`membrane_from_h`. Kernels walk the steps one
at a time (per-step tensors stay in cache; a Triton program keeps its
neurons in registers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..functional import LeakyParams


@dataclass(frozen=True)
class ScanMode:
    """The static parts of a leaky layer's update (hashable, for kernel selection)."""

    reset: str  # "subtract" | "zero" | "none"
    delayed_reset: bool  # snnTorch's reset from the previous step's membrane
    same_step_reset: str  # "none" | "snn" (snnTorch reset_delay=False) | "detached" (seed)

    @classmethod
    def from_params(cls, p: LeakyParams) -> ScanMode:
        if p.reset_mechanism == "none":
            return cls("none", False, "none")
        if p.detach_reset:
            return cls(p.reset_mechanism, False, "detached")
        return cls(p.reset_mechanism, True, "none" if p.reset_delay else "snn")


def forward_step(x, m_prev, beta, theta, g: float, mode: ScanMode, h_out, m_out, spk_out) -> None:
    """One step without autograd, written into the ``(B, ...)`` views ``h_out``, ``m_out``, ``spk_out``."""
    if mode.delayed_reset:
        r = (m_prev > theta).to(m_prev.dtype)
        if mode.reset == "subtract":
            torch.addcmul(x, beta, m_prev, out=h_out).sub_(r * theta)
        else:
            torch.addcmul(x, beta, (1 - r) * m_prev, out=h_out)
    else:
        torch.addcmul(x, beta, m_prev, out=h_out)
    torch.gt(h_out, theta, out=spk_out)  # 0 / 1 in the spikes' dtype
    fired = spk_out
    if g != 1.0:
        fired = spk_out.to(h_out.dtype, copy=True)
        spk_out.mul_(g)
    if mode.same_step_reset == "none":
        if m_out.data_ptr() != h_out.data_ptr():
            m_out.copy_(h_out)
    elif mode.same_step_reset == "snn":
        torch.sub(h_out, (fired - r) * (theta if mode.reset == "subtract" else h_out), out=m_out)
    elif mode.reset == "subtract":
        torch.addcmul(h_out, fired, theta, value=-1.0, out=m_out)
    else:
        torch.addcmul(h_out, fired, h_out, value=-1.0, out=m_out)


def membrane_from_h(h, m_prev, theta, mode: ScanMode) -> torch.Tensor:
    """The membrane after step ``t`` from that step's ``h`` (``m_prev`` is only read for snnTorch's
    same-step reset); for modes without a same-step reset it is ``h`` itself (no copy)."""
    if mode.same_step_reset == "none":
        return h
    fired = (h > theta).to(h.dtype)
    if mode.same_step_reset == "snn":
        fired = fired - (m_prev > theta).to(h.dtype)
    return h - fired * (theta if mode.reset == "subtract" else h)


def membrane_sequence(h_seq, mem0, theta, mode: ScanMode) -> torch.Tensor:
    """All membranes ``(T, B, ...)`` recomputed from ``h_seq`` and the initial membrane ``mem0``."""
    if mode.same_step_reset == "none":
        return h_seq
    if mode.same_step_reset == "detached":
        return membrane_from_h(h_seq, None, theta, mode)
    mem_seq = torch.empty_like(h_seq)
    m = mem0
    for t in range(h_seq.shape[0]):
        m = mem_seq[t].copy_(membrane_from_h(h_seq[t], m, theta, mode))
    return mem_seq


def backward_step(
    grad_spk,
    grad_mem,
    carry,
    h,
    m_prev,
    beta,
    theta,
    g: float,
    surrogate,
    mode: ScanMode,
    need_beta: bool,
    need_theta: bool,
    out,
):
    """Reverse step ``t`` without autograd; ``(B, ...)`` tensors, ``grad_spk``/``grad_mem``/``carry`` may be ``None``.

    ``carry`` is ``C_{t+1} * dL/dh_{t+1}`` from step t+1. Writes ``dL/dh_t = dL/dx_t`` into ``out`` and
    returns ``(carry for step t-1, beta term or None, theta term or None)``; the beta / theta terms are
    per element (sum over steps, then reduce). Gradients are accumulated in float32.
    """
    slope = surrogate.derivative_(h - theta)
    fired = (h > theta).to(h.dtype) if mode.same_step_reset != "none" else None
    r = (m_prev > theta).to(h.dtype) if mode.delayed_reset else None
    delta_m = grad_mem if carry is None else (carry if grad_mem is None else grad_mem + carry)

    a = membrane_jacobian(slope, fired, r, h, theta, mode)
    base = None if delta_m is None else (delta_m if a is None else delta_m * a)
    delta_h = out if out.dtype == h.dtype else torch.empty_like(h)
    if grad_spk is None:
        delta_h.copy_(base) if base is not None else delta_h.zero_()
    elif base is None:
        torch.mul(grad_spk, slope, out=delta_h).mul_(g)
    else:
        torch.addcmul(base, grad_spk, slope, value=g, out=delta_h)
    if delta_h is not out:
        out.copy_(delta_h)

    keep = 1 - r if (mode.delayed_reset and mode.reset == "zero") else None
    carry = delta_h * beta if keep is None else delta_h * (keep * beta)
    grad_beta = grad_theta = None
    if need_beta:
        grad_beta = delta_h * m_prev if keep is None else delta_h * keep * m_prev
    if need_theta:
        grad_theta = torch.zeros_like(h) if grad_spk is None else -(grad_spk * slope) * g
        grad_theta = reset_theta_terms(grad_theta, delta_m, delta_h, slope, fired, r, h, theta, mode)
    return carry, grad_beta, grad_theta


def membrane_jacobian(slope, fired, r, h, theta, mode: ScanMode):
    """``dm/dh`` of one step, or ``None`` where it is 1 (no same-step reset, or a detached subtract)."""
    if mode.same_step_reset == "snn" and mode.reset == "subtract":
        return 1 - theta * slope
    if mode.same_step_reset == "snn":
        return (1 - fired + r) - h * slope
    if mode.same_step_reset == "detached" and mode.reset == "zero":
        return 1 - fired
    return None


def reset_theta_terms(grad_theta, delta_m, delta_h, slope, fired, r, h, theta, mode: ScanMode):
    """``grad_theta`` (per element) plus the resets' dependence on the threshold; ``delta_m`` may be ``None``."""
    if delta_m is not None:
        if mode.same_step_reset == "snn" and mode.reset == "subtract":
            grad_theta = grad_theta + delta_m * (theta * slope - (fired - r))
        elif mode.same_step_reset == "snn":
            grad_theta = grad_theta + delta_m * h * slope
        elif mode.same_step_reset == "detached" and mode.reset == "subtract":
            grad_theta = grad_theta - delta_m * fired
    if mode.delayed_reset and mode.reset == "subtract":
        grad_theta = grad_theta - delta_h * r
    return grad_theta


def clamp_grad_mask(beta: torch.Tensor) -> torch.Tensor:
    """Derivative of ``beta.clamp(0, 1)``: 1 where beta is inside [0, 1], else 0."""
    return ((beta >= 0) & (beta <= 1)).to(beta.dtype)
