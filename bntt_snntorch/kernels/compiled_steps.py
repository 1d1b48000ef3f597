"""The fused BNTT + leaky node over a whole sequence as compiled CPU loops (TorchInductor C++).

In eager mode a step is ~15 separate passes over a ``(B, C, H, W)`` slice that does not fit in
cache, so memory traffic, not arithmetic, sets the time. ``torch.compile`` of the T steps unrolled
fuses them: forward, normalise, integrate, fire and reset of every step in one pass over the
sequence (the membrane stays in registers); backward, the recomputed forward, the reverse scan and
batch norm's per-(step, channel) sums in one pass, then the input gradient. Measured at a VGG9 layer
(T=10, B=16, 64x32x32, fp32, 2 cores): forward 8-28 ms against 44-68 ms for one compiled step at a
time and 119-148 ms eager; backward 49 ms against 335 ms eager (a ReLU + batch norm over the (T*B)
batch: 56-59 ms each way). The math is :mod:`bntt_snntorch.definition`'s, called here, not written
again.

The functions compile once per (variant, surrogate, dtype, rank, T) with dynamic sizes otherwise;
compiled code is cached on disk by TorchInductor across processes. The compiler's messages (such as
a CUDA build of torch saying that no CUDA runtime is found) are kept off the user's console.
"""

from __future__ import annotations

import contextlib
import logging
import types
import warnings

import torch

from .. import definition as D


def bntt_forward_step(x, k, shift, m_prev, beta, theta, g, codes):
    """Normalise step ``x`` ``(B, C, ...)`` as ``x * k + shift`` (per channel, rounded to ``x``'s dtype as
    batch norm's output), then fire. Returns ``(h, m, spk)``, ``h`` and ``m`` in float32."""
    cur = D.normalise(x.float(), k, shift)
    if x.dtype != torch.float32:
        cur = cur.to(x.dtype).float()
    return D.forward_step(cur, m_prev, beta, theta, g, *codes)


def bntt_forward_sequence(x_seq, k, shift, m0, beta, theta, g, codes):
    """The steps of ``x_seq`` ``(T, B, C, ...)`` from membrane ``m0`` (float32 ``(B, C, ...)``; ``k``,
    ``shift``: ``(T, C, 1, ...)``): ``(spikes (T, B, C, ...) in x's dtype, last membrane)``."""
    m, spikes = m0, []
    for t in range(x_seq.shape[0]):
        _, m, spk = bntt_forward_step(x_seq[t], k[t], shift[t], m, beta, theta, g, codes)
        spikes.append(spk.to(x_seq.dtype))
    return torch.stack(spikes), m


def bntt_backward_sequence(
    grad_spk, x_seq, m0, mean, rstd, k, beta, theta, g, surrogate, codes, training, through_time
):  # fmt: skip
    """The node's backward over the sequence: the forward recomputed from ``m0``, then the reverse steps
    (:func:`bntt_backward_step`); ``through_time=False`` passes no gradient from step t + 1 to step t
    (the online rules). ``mean``, ``rstd``, ``k``: ``(T, C)``. Returns ``(dL/dx (T, B, C, ...) in x's
    dtype, sum(dL/dcurrent * xhat) (T, C), beta gradient, threshold gradient)``."""
    shape = (-1,) + (1,) * (x_seq.dim() - 3)
    m, hs, ms = m0, [], []
    for t in range(x_seq.shape[0]):
        ms.append(m)
        h, m, _ = bntt_forward_step(x_seq[t], k[t].view(shape), (-mean[t] * k[t]).view(shape), m, beta, theta, g, codes)
        hs.append(h)
    no_carry = carry = torch.zeros_like(m0)
    grads, sums, d_beta, d_theta = [None] * len(hs), [None] * len(hs), 0.0, 0.0
    for t in reversed(range(len(hs))):
        carry, sums[t], beta_t, theta_t, dx = bntt_backward_step(
            grad_spk[t], carry if through_time else no_carry, hs[t], ms[t], x_seq[t], mean[t], rstd[t], k[t], beta,
            theta, g, surrogate, codes, training,
        )  # fmt: skip
        grads[t] = dx.to(x_seq.dtype)
        d_beta, d_theta = d_beta + beta_t, d_theta + theta_t
    return torch.stack(grads), torch.stack(sums), d_beta, d_theta


def bntt_backward_step(grad_spk, carry, h, m_prev, x, mean, rstd, k, beta, theta, g, surrogate, codes, training):
    """Reverse step ``t``: ``dL/dh`` from the spike gradient and ``carry``, then batch norm's backward
    for step ``t``.

    Returns ``(carry, sum(dL/dcurrent * xhat) per channel, beta term, theta term, dL/dx)``: ``carry``
    for step t-1, this step's summed beta / theta gradient terms (scalar beta and threshold) and the
    input gradient in float32."""
    RESET, DELAYED, SAME = codes
    slope = surrogate.derivative(h - theta)
    delta_h, carry, beta_t, theta_t = D.backward_step(
        grad_spk.float(), carry, h, m_prev, beta, theta, g, slope, RESET, DELAYED, SAME
    )
    dims = (0, *range(2, x.dim()))
    xf = x.float()
    shape = (-1,) + (1,) * (x.dim() - 2)
    mean_b, rstd_b = mean.view(shape), rstd.view(shape)
    n = x.numel() / x.shape[1]
    sum_dy = delta_h.sum(dims)
    sum_dy_xhat = rstd * ((delta_h * xf).sum(dims) - mean * sum_dy)
    dx = D.normalise_input_grad(
        delta_h, xf, k.view(shape), mean_b, rstd_b, (sum_dy / n).view(shape), (sum_dy_xhat / n).view(shape), training
    )
    return carry, sum_dy_xhat, beta_t.sum(), theta_t.sum(), dx


_compiled: dict[tuple, object] = {}


def compiled(name: str, key: tuple):
    """The ``torch.compile``-d ``bntt_forward_sequence`` / ``bntt_backward_sequence`` for ``key``
    (variant, surrogate, ..., T). Each key compiles a copy of the function's code object, so its
    variants and sequence lengths do not share (and exhaust) one recompile budget."""
    if (name, key) not in _compiled:
        fn = {"forward": bntt_forward_sequence, "backward": bntt_backward_sequence}[name]
        copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__)
        options = {"emulate_precision_casts": True}  # keep the bf16 rounding of the current
        _compiled[name, key] = _quiet(torch.compile(copy, dynamic=True, fullgraph=True, options=options))
    return _compiled[name, key]


def _quiet(fn):
    """``fn`` with the compiler's warnings and log lines kept off the console (first calls compile)."""

    def call(*args):
        with warnings.catch_warnings(), _silenced("torch.utils.cpp_extension"):
            warnings.simplefilter("ignore")
            return fn(*args)

    return call


@contextlib.contextmanager
def _silenced(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
