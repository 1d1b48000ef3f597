"""The leaky step and reverse step for the eager torch scans, with in-place ops into output buffers.

On the CPU a step of a small layer costs its number of ops (each a dispatch and a pass over a
``(B, ...)`` slice), so the eager scans write into preallocated buffers and fuse what torch can
(``addcmul``) instead of composing :mod:`bntt_snntorch.definition`'s functions, which allocate a
tensor an op. This is the one place that spells the neuron a second time:
tests/test_definition.py checks both functions against the definition for every variant (values,
carries and the leak / threshold terms, fresh random inputs).
"""

from __future__ import annotations

import torch

from .. import definition as D


def forward_into(x, m_prev, beta, theta, g, codes, h_out, m_out, spk_out) -> None:
    """:func:`bntt_snntorch.definition.forward_step` written into the ``(B, ...)`` views ``h_out``,
    ``m_out`` and ``spk_out`` (``m_out`` may be ``h_out`` itself for variants without a same-step reset).
    ``g=None`` stands for a graded-spikes factor of exactly 1 (known without reading a tensor): the
    spikes then double as this step's fired mask, one op less."""
    RESET, DELAYED, SAME = codes
    r = (m_prev > theta).to(m_prev.dtype) if (DELAYED or SAME == 1) else None
    if DELAYED and RESET == 0:
        torch.addcmul(x, beta, m_prev, out=h_out).sub_(r * theta)
    elif DELAYED:
        torch.addcmul(x, beta, (1 - r) * m_prev, out=h_out)
    else:
        torch.addcmul(x, beta, m_prev, out=h_out)
    torch.gt(h_out, theta, out=spk_out)  # 0 / 1 in the spikes' dtype
    fired = None
    if SAME:
        fired = spk_out if (g is None and spk_out.dtype == h_out.dtype) else spk_out.to(h_out.dtype, copy=True)
    if g is not None:
        spk_out.mul_(g)
    if SAME == 0:
        if m_out.data_ptr() != h_out.data_ptr():
            m_out.copy_(h_out)
    elif SAME == 1:
        torch.sub(h_out, (fired - r) * (theta if RESET == 0 else h_out), out=m_out)
    elif RESET == 0:
        torch.addcmul(h_out, fired, theta, value=-1.0, out=m_out)
    else:
        torch.addcmul(h_out, fired, h_out, value=-1.0, out=m_out)


def backward_into(grad_spk, delta_m, h, m_prev, beta, theta, g, slope, codes, need, out):
    """:func:`bntt_snntorch.definition.backward_step` with ``dL/dh`` written into ``out``; ``grad_spk`` and
    ``delta_m`` may be None (no gradient), ``g`` None for a factor of exactly 1. Returns ``(carry, beta
    term or None, theta term or None)``, the terms only where ``need = (beta, theta)`` asks for them."""
    RESET, DELAYED, SAME = codes
    r = (m_prev > theta).to(h.dtype) if (DELAYED or SAME == 1) else None
    fired = (h > theta).to(h.dtype) if SAME and (RESET == 1 or need[1]) else None
    if SAME == 1 and RESET == 0:
        jacobian = 1 - theta * slope
    elif SAME == 1:
        jacobian = (1 - fired + r) - h * slope
    elif SAME == 2 and RESET == 1:
        jacobian = 1 - fired
    else:
        jacobian = None
    base = None if delta_m is None else (delta_m if jacobian is None else delta_m * jacobian)
    if grad_spk is None:
        out.copy_(base) if base is not None else out.zero_()
    elif base is None:
        torch.mul(grad_spk, slope, out=out) if g is None else torch.mul(grad_spk, slope, out=out).mul_(g)
    else:
        torch.addcmul(base, grad_spk if g is None else grad_spk * g, slope, out=out)
    keep = 1 - r if (DELAYED and RESET == 1) else None
    carry = out * beta if keep is None else out * (keep * beta)
    beta_term = theta_term = None
    if need[0]:
        beta_term = out * m_prev if keep is None else out * keep * m_prev
    if need[1]:
        unit = 1.0 if g is None else g
        fire_grad = torch.zeros_like(h) if grad_spk is None else D.fire_gradient(grad_spk, unit, slope)
        delta_m = 0.0 if delta_m is None else delta_m
        theta_term = D.threshold_terms(fire_grad, delta_m, out, slope, fired, r, h, theta, RESET, DELAYED, SAME)
    return carry, beta_term, theta_term
