"""One step of the fused BNTT + leaky node as single compiled CPU loops (TorchInductor C++).

In eager mode a step is ~15 separate passes over a ``(B, C, H, W)`` slice that does not fit in
cache, so memory traffic, not arithmetic, sets the time. ``torch.compile`` fuses each step into
one loop nest: normalise, integrate, fire and reset in one pass forward; surrogate, reverse scan
and batch norm's backward (its two per-channel sums, then the input gradient) in one pass
backward. The math is :mod:`bntt_snntorch.definition`'s, called here, not written again.

The functions compile once per (variant, surrogate, dtype, rank) with dynamic sizes; compiled code
is cached on disk by TorchInductor across processes. The compiler's messages (such as a CUDA
build of torch saying that no CUDA runtime is found) are kept off the user's console.
"""

from __future__ import annotations

import contextlib
import logging
import types
import warnings

import torch

from .. import definition as D


def bntt_forward_step(x, k, shift, m_prev, beta, theta, g, codes, spk_out):
    """Normalise step ``x`` ``(B, C, ...)`` as ``x * k + shift`` (per channel, rounded to ``x``'s dtype as
    batch norm's output), then fire. Returns ``(h, m)`` in float32; the spikes go into ``spk_out``
    (``x``'s dtype) when it is given."""
    cur = D.normalise(x.float(), k, shift)
    if x.dtype != torch.float32:
        cur = cur.to(x.dtype).float()
    h, m, spk = D.forward_step(cur, m_prev, beta, theta, g, *codes)
    if spk_out is not None:
        spk_out.copy_(spk)
    return h, m


def bntt_backward_step(
    grad_spk, carry, h, m_prev, x, mean, rstd, k, beta, theta, g, surrogate, codes, training, dx_out
):  # fmt: skip
    """Reverse step ``t``: ``dL/dh`` from the spike gradient and ``carry``, then batch norm's backward
    for step ``t``, the input gradient written into ``dx_out`` (``x``'s dtype).

    Returns ``(carry, sum(dL/dcurrent * xhat) per channel, beta term, theta term)``: ``carry`` for
    step t-1 and this step's summed beta / theta gradient terms (scalar beta and threshold)."""
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
    dx_out.copy_(dx)
    return carry, sum_dy_xhat, beta_t.sum(), theta_t.sum()


_compiled: dict[tuple, object] = {}


def compiled(name: str, key: tuple):
    """The ``torch.compile``-d ``bntt_forward_step`` / ``bntt_backward_step`` for ``key`` (variant,
    surrogate, ...). Each key compiles a copy of the function's code object, so its variants do not
    share (and exhaust) one recompile budget."""
    if (name, key) not in _compiled:
        fn = {"forward": bntt_forward_step, "backward": bntt_backward_step}[name]
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
