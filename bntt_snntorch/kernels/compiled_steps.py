"""One step of the fused BNTT + leaky node as single compiled CPU loops (TorchInductor C++).

In eager mode a step is ~15 separate passes over a ``(B, C, H, W)`` slice
that does not fit in cache, so memory traffic, not arithmetic, sets the
time. ``torch.compile`` fuses each step into one loop nest: normalise,
integrate, fire and reset in one pass forward; surrogate, reverse scan and
batch norm's backward (its two per-channel sums, then the input gradient)
in one pass backward. The math mirrors :mod:`.scan_math` term for term and
is tested against it (tests/test_lean.py).

The functions compile once per (mode, surrogate, dtype, rank) with dynamic
sizes; compiled code is cached on disk by TorchInductor across processes.
"""

from __future__ import annotations

import types

import torch

from .scan_math import ScanMode, membrane_from_h, membrane_jacobian, reset_theta_terms


def _fire(cur, m_prev, beta, theta, g: float, mode: ScanMode):
    """``(h, m, spk)`` of one step from the float32 current ``cur``; mirrors ``scan_math.forward_step``."""
    r = (m_prev > theta).float() if mode.delayed_reset else None
    if mode.delayed_reset and mode.reset == "subtract":
        h = beta * m_prev + cur - r * theta
    elif mode.delayed_reset:
        h = beta * ((1 - r) * m_prev) + cur
    else:
        h = beta * m_prev + cur
    fired = (h > theta).float()
    if mode.same_step_reset == "none":
        m = h
    elif mode.same_step_reset == "snn":
        m = h - (fired - r) * (theta if mode.reset == "subtract" else h)
    else:
        m = h - fired * (theta if mode.reset == "subtract" else h)
    return h, m, fired * g if g != 1.0 else fired


def bntt_forward_step(x, k, shift, m_prev, beta, theta, g: float, mode: ScanMode, spk_out=None):
    """Normalise step ``x`` ``(B, C, ...)`` as ``x * k + shift`` (per channel, rounded to ``x``'s dtype
    as batch norm's output), then fire. Returns ``(h, m)`` in float32; the spikes are written into
    ``spk_out`` (``x``'s dtype) when given."""
    cur = x.float() * k + shift
    if x.dtype != torch.float32:
        cur = cur.to(x.dtype).float()
    h, m, spk = _fire(cur, m_prev, beta, theta, g, mode)
    if spk_out is not None:
        spk_out.copy_(spk)
    return h, m


def bntt_backward_step(
    grad_spk, carry, h, prev, prev_is_h: bool, x, mean, rstd, k, beta, theta, g: float, surrogate, mode, training,
    dx_out,
):  # fmt: skip
    """Reverse step ``t``: ``dL/dh`` from the spike gradient and ``carry``, then batch norm's
    backward for step ``t``, the input gradient written into ``dx_out`` (``x``'s dtype).

    ``prev`` is the membrane of step t-1, or with ``prev_is_h`` its ``h`` (the membrane is then
    recomputed from it as ``scan_math.membrane_from_h`` does; not for snnTorch's same-step reset).

    Returns ``(carry, sum_xhat, beta_term, theta_term)``: ``carry``
    for step t-1, ``sum(dL/dcurrent * x_hat)`` per channel, and this step's summed beta / theta
    gradient terms (scalars). Mirrors ``scan_math.backward_step`` for scalar beta and threshold.
    """
    dims = (0, *range(2, x.dim()))
    m_prev = membrane_from_h(prev, None, theta, mode) if prev_is_h else prev
    slope = surrogate.derivative(h - theta)
    fired = (h > theta).float()
    r = (m_prev > theta).float() if mode.delayed_reset else None
    a = membrane_jacobian(slope, fired, r, h, theta, mode)
    gs = grad_spk.float() * slope * g
    delta_m = carry
    delta_h = (delta_m if a is None else delta_m * a) + gs
    keep = 1 - r if (mode.delayed_reset and mode.reset == "zero") else None
    carry = delta_h * beta if keep is None else delta_h * (keep * beta)
    beta_term = (delta_h * m_prev if keep is None else delta_h * keep * m_prev).sum()
    theta_term = reset_theta_terms(-gs, delta_m, delta_h, slope, fired, r, h, theta, mode).sum()

    xf = x.float()
    s1 = delta_h.sum(dims)
    s2 = rstd * ((delta_h * xf).sum(dims) - mean * s1)
    shape = (-1,) + (1,) * (x.dim() - 2)
    if training:
        n = x.numel() / x.shape[1]
        k2 = -k * rstd * s2 / n
        k3 = -k * s1 / n - k2 * mean
        dx = delta_h * k.view(shape) + xf * k2.view(shape) + k3.view(shape)
    else:
        dx = delta_h * k.view(shape)
    dx_out.copy_(dx)
    return carry, s2, beta_term, theta_term


_compiled: dict[tuple, object] = {}


def compiled(name: str, key: tuple):
    """The ``torch.compile``-d ``bntt_forward_step`` / ``bntt_backward_step`` for ``key`` (mode,
    surrogate type, ...). Each key compiles a copy of the function's code object, so its
    variants do not share (and exhaust) one recompile budget."""
    if (name, key) not in _compiled:
        fn = {"forward": bntt_forward_step, "backward": bntt_backward_step}[name]
        copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__)
        options = {"emulate_precision_casts": True}  # keep the bf16 rounding of the current
        _compiled[name, key] = torch.compile(copy, dynamic=True, fullgraph=True, options=options)
    return _compiled[name, key]
