"""The ``synapse -> BNTT -> leaky`` block on the GPU: per-step statistics, normalisation and the leaky
scan in Triton, the membrane in registers across T.

Three kernels, each a loop over the steps inside one program, programs laid out channel-major (a
program holds ``BLOCK`` neurons of one channel, so its step's statistics are two scalars):

* ``_stats_kernel`` — each step's per-channel mean and biased variance (two passes, float32);
* ``_forward_kernel`` — ``current = k * x + shift`` (BNTT with the input scale folded into ``k``),
  then the neuron (:mod:`bntt_snntorch.definition`), writing spikes only;
* ``_backward_kernel`` — recomputes the membranes from the synapse output (kept in a transient
  float32 buffer during backward), walks the steps in reverse, writes ``dL/dcurrent`` and adds its
  per-(step, channel) sums; ``_input_grad_kernel`` then turns it into batch norm's input gradient
  in place.

The block's node (:mod:`.fused_block`: the synapse output in its own dtype and the ``(T, C)`` statistics kept,
nothing of the neuron) runs these as the ``bntt-triton`` entry of :data:`~.backends.BLOCK_BACKENDS`; under
``torch.compile`` that node is one ``torch.library`` op (``bntt_snntorch::fused_bntt_leaky``), so compiled graphs
and CUDA graphs see one node. Runs on CUDA, and on CPU under ``TRITON_INTERPRET=1`` (how the tests check it
without a GPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import definition
from .triton_definition import T as D

BLOCK = 512


@triton.jit
def _stats_kernel(x_ptr, mean_ptr, var_ptr, B, C, L, BLOCK: tl.constexpr):
    """Program ``t * C + c``: mean and biased variance of channel ``c`` of step ``t`` over ``B * L`` values."""
    pid = tl.program_id(0)
    t = pid // C
    c = pid % C
    n = B * L
    base = x_ptr + t.to(tl.int64) * B * C * L + c * L
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, n, BLOCK):
        j = start + tl.arange(0, BLOCK)
        x = tl.load(base + (j // L) * C * L + j % L, mask=j < n, other=0.0).to(tl.float32)
        acc += x
    mean = D.batch_mean(tl.sum(acc, axis=0), n)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, n, BLOCK):
        j = start + tl.arange(0, BLOCK)
        x = tl.load(base + (j // L) * C * L + j % L, mask=j < n, other=0.0).to(tl.float32)
        acc += tl.where(j < n, D.squared_deviation(x, mean), 0.0)
    tl.store(mean_ptr + pid, mean)
    tl.store(var_ptr + pid, D.batch_variance(tl.sum(acc, axis=0), n))


@triton.jit
def _forward_kernel(
    x_ptr, k_ptr, shift_ptr, m0_ptr, spk_ptr, mem_ptr, params_ptr, T, B, C, L,
    RESET: tl.constexpr, DELAYED: tl.constexpr, SAME: tl.constexpr, ROUND: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Program ``(c, chunk)``: ``BLOCK`` neurons of channel ``c`` through all steps; the last membrane
    goes to ``mem_ptr``. ``ROUND``: round the current to the input's dtype (bf16 / fp16), as batch
    norm's output is."""
    c = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = j < B * L
    offs = ((j // L) * C + c) * L + j % L  # within one step (B, C, L)
    beta = D.clamp_leak(tl.load(params_ptr))
    theta = tl.load(params_ptr + 1)
    g = tl.load(params_ptr + 2)
    m = tl.load(m0_ptr + offs, mask=mask, other=0.0)
    step = B * C * L
    x_ptr += offs  # pointers walk one step per iteration: 64-bit, no overflow for large T * step
    spk_ptr += offs
    for t in range(T):
        x = tl.load(x_ptr, mask=mask, other=0.0)
        cur = D.current(x, tl.load(k_ptr + t * C + c), tl.load(shift_ptr + t * C + c), ROUND)
        h, m, spk = D.forward_step(cur, m, beta, theta, g, RESET, DELAYED, SAME)
        tl.store(spk_ptr, spk.to(spk_ptr.dtype.element_ty), mask=mask)
        x_ptr += step
        spk_ptr += step
    tl.store(mem_ptr + offs, m, mask=mask)


@triton.jit
def _backward_kernel(
    gs_ptr, x_ptr, k_ptr, shift_ptr, mean_ptr, m0_ptr, mem_ptr, dy_ptr, sums_ptr, part_ptr, params_ptr, a, b, T, B, C,
    L,
    RESET: tl.constexpr, DELAYED: tl.constexpr, SAME: tl.constexpr, SURR: tl.constexpr, ROUND: tl.constexpr,
    THROUGH_TIME: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """Program ``(c, chunk)``: recompute the membranes forward into ``mem_ptr`` (float32, T steps), then
    walk back writing ``dy = dL/dcurrent`` (rounded to the input's dtype with ``ROUND``) and adding ``sum(dy)``
    and the definition's centred sum (``centred_gradient``) per (step, channel) into ``sums_ptr`` ``(T, C, 2)``,
    and this program's beta / theta terms into ``part_ptr``. ``THROUGH_TIME`` False: no gradient carried from step t + 1
    to step t (the online rules)."""
    c = tl.program_id(0)
    chunk = tl.program_id(1)
    j = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = j < B * L
    offs = ((j // L) * C + c) * L + j % L
    beta = D.clamp_leak(tl.load(params_ptr))
    theta = tl.load(params_ptr + 1)
    g = tl.load(params_ptr + 2)
    step = B * C * L
    m0 = tl.load(m0_ptr + offs, mask=mask, other=0.0)
    m = m0
    x_ptr += offs
    mem_ptr += offs
    for t in range(T):
        x = tl.load(x_ptr, mask=mask, other=0.0)
        cur = D.current(x, tl.load(k_ptr + t * C + c), tl.load(shift_ptr + t * C + c), ROUND)
        h, m, spk = D.forward_step(cur, m, beta, theta, g, RESET, DELAYED, SAME)
        tl.store(mem_ptr, m, mask=mask)
        x_ptr += step
        mem_ptr += step
    # walk back: the pointers stand one step past the end
    gs_ptr += offs + T * step
    dy_ptr += offs + T * step
    carry = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_beta = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_theta = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        x_ptr -= step
        mem_ptr -= step
        gs_ptr -= step
        dy_ptr -= step
        x = tl.load(x_ptr, mask=mask, other=0.0)
        if t > 0:
            m_prev = tl.load(mem_ptr - step, mask=mask, other=0.0)
        else:
            m_prev = m0
        cur = D.current(x, tl.load(k_ptr + t * C + c), tl.load(shift_ptr + t * C + c), ROUND)
        h = D.charge(cur, m_prev, D.previous_reset(m_prev, theta, DELAYED, SAME), beta, theta, RESET, DELAYED)
        slope = D.surrogate_derivative(h - theta, a, b, SURR)
        gs = tl.load(gs_ptr, mask=mask, other=0.0).to(tl.float32)
        delta_m = carry
        if not THROUGH_TIME:
            delta_m = tl.zeros((BLOCK,), dtype=tl.float32)
        dy, carry, beta_t, theta_t = D.backward_step(gs, delta_m, h, m_prev, beta, theta, g, slope, RESET, DELAYED,
                                                     SAME)  # fmt: skip
        if ROUND:
            dy = dy.to(x.dtype).to(tl.float32)  # the gradient of a bf16 / fp16 current is in that dtype
        dy = tl.where(mask, dy, 0.0)
        tl.store(dy_ptr, dy.to(dy_ptr.dtype.element_ty), mask=mask)
        tl.atomic_add(sums_ptr + (t * C + c) * 2, tl.sum(dy, axis=0))
        centred = D.centred_gradient(dy, x.to(tl.float32), tl.load(mean_ptr + t * C + c))
        tl.atomic_add(sums_ptr + (t * C + c) * 2 + 1, tl.sum(tl.where(mask, centred, 0.0), axis=0))
        acc_beta += tl.where(mask, beta_t, 0.0)
        acc_theta += tl.where(mask, theta_t, 0.0)
    part = (c * tl.num_programs(1) + chunk) * 2
    tl.store(part_ptr + part, tl.sum(acc_beta, axis=0))
    tl.store(part_ptr + part + 1, tl.sum(acc_theta, axis=0))


@triton.jit
def _input_grad_kernel(
    dy_ptr, x_ptr, k_ptr, mean_ptr, rstd_ptr, moments_ptr, T, B, C, L, TRAINING: tl.constexpr, BLOCK: tl.constexpr
):  # fmt: skip
    """Batch norm's ``dL/dx`` for every step, in place of ``dy`` (``moments_ptr``: ``(T, C, 2)``, the
    channel means of ``dy`` and ``dy * xhat``)."""
    c = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = j < B * L
    offs = ((j // L) * C + c) * L + j % L
    step = B * C * L
    dy_ptr += offs
    x_ptr += offs
    for t in range(T):
        tc = t * C + c
        dy = tl.load(dy_ptr, mask=mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr, mask=mask, other=0.0).to(tl.float32)
        dx = D.normalise_input_grad(
            dy, x, tl.load(k_ptr + tc), tl.load(mean_ptr + tc), tl.load(rstd_ptr + tc),
            tl.load(moments_ptr + tc * 2), tl.load(moments_ptr + tc * 2 + 1), TRAINING,
        )  # fmt: skip
        tl.store(dy_ptr, dx.to(dy_ptr.dtype.element_ty), mask=mask)
        dy_ptr += step
        x_ptr += step


def _layout(x: torch.Tensor) -> tuple[int, int, int, int]:
    """``(T, B, C, L)`` of a ``(T, B, C, ...)`` sequence (``L``: the product of the spatial sizes)."""
    T, B, C = x.shape[:3]
    return T, B, C, x[0, 0, 0].numel()


def batch_statistics(x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's per-channel mean and biased variance of ``x_seq`` ``(T, B, C, ...)``: two float32 ``(T, C)``
    tensors, one kernel."""
    x = x_seq.detach().contiguous()
    T, B, C, L = _layout(x)
    mean = torch.empty(T, C, dtype=torch.float32, device=x.device)
    var = torch.empty_like(mean)
    _stats_kernel[(T * C,)](x, mean, var, B, C, L, BLOCK=BLOCK)
    return mean, var


def forward(x, k, shift, mem0, params, codes) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``(T, B, C, ...)`` in ``x``'s dtype and the last membrane ``(B, C, ...)`` (float32), from
    membrane ``mem0``; ``codes``: the variant's ``(RESET, DELAYED, SAME)``."""
    T, B, C, L = _layout(x)
    spk = torch.empty_like(x)
    mem = torch.empty(x.shape[1:], dtype=torch.float32, device=x.device)
    RESET, DELAYED, SAME = codes
    _forward_kernel[(C, triton.cdiv(B * L, BLOCK))](
        x, k, shift, mem0, spk, mem, params, T, B, C, L,
        RESET=RESET, DELAYED=bool(DELAYED), SAME=SAME, ROUND=x.dtype != torch.float32, BLOCK=BLOCK,
    )  # fmt: skip
    return spk, mem


def backward(grad_spk, x, k, shift, mean, rstd, mem0, params, codes, surrogate, training: bool, through_time=True,
             out=None):  # fmt: skip
    """``(dL/dx, sum(dy * xhat) (T, C), dL/dbeta (of the clamped beta), dL/dtheta, sum(dy) (T, C))`` from the
    spikes' gradient (``dy = dL/dcurrent``); ``dL/dx`` includes the statistics' dependence on ``x`` in training.
    ``surrogate``: ``(SURR, a, b)``; ``through_time=False``: each step's gradient through its own input only."""
    T, B, C, L = _layout(x)
    chunks = triton.cdiv(B * L, BLOCK)
    mem = torch.empty(x.shape, dtype=torch.float32, device=x.device)  # transient: the recomputed membranes
    grad_x = torch.empty_like(x) if out is None else out  # dy first, then (in place) dL/dx; out: grad_spk itself
    sums = torch.zeros(T, C, 2, dtype=torch.float32, device=x.device)
    part = torch.empty(C * chunks, 2, dtype=torch.float32, device=x.device)
    RESET, DELAYED, SAME = codes
    SURR, a, b = surrogate
    _backward_kernel[(C, chunks)](
        grad_spk.contiguous(), x, k, shift, mean, mem0, mem, grad_x, sums, part, params, float(a), float(b), T, B, C,
        L, RESET=RESET, DELAYED=bool(DELAYED), SAME=SAME, SURR=int(SURR), ROUND=x.dtype != torch.float32,
        THROUGH_TIME=bool(through_time), BLOCK=BLOCK,
    )  # fmt: skip
    del mem
    sum_dy_xhat, mean_dy, mean_dy_xhat = definition.gradient_moments(sums[..., 0], sums[..., 1], rstd, B * L)
    moments = torch.stack([mean_dy, mean_dy_xhat], dim=-1).contiguous()
    _input_grad_kernel[(C, chunks)](grad_x, x, k, mean, rstd, moments, T, B, C, L, TRAINING=training, BLOCK=BLOCK)
    totals = part.sum(0)
    return grad_x, sum_dy_xhat, totals[0], totals[1], sums[..., 0]
