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

Kept for backward: the synapse output in its own dtype and the ``(T, C)`` statistics; nothing of
the neuron. The block is one ``torch.library`` custom op (``bntt_snntorch::bntt_leaky``) with its
backward registered, so ``torch.compile`` and CUDA graphs see one node. Runs on CUDA, and on CPU
under ``TRITON_INTERPRET=1`` (how the tests check it without a GPU).
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
    BLOCK: tl.constexpr,
):  # fmt: skip
    """Program ``(c, chunk)``: recompute the membranes forward into ``mem_ptr`` (float32, T steps), then
    walk back writing ``dy = dL/dcurrent`` (rounded to the input's dtype with ``ROUND``) and adding
    ``sum(dy)`` and ``sum(dy * (x - mean))`` per (step, channel) into ``sums_ptr`` ``(T, C, 2)``, and this
    program's beta / theta terms into ``part_ptr``."""
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
        dy, carry, beta_t, theta_t = D.backward_step(gs, carry, h, m_prev, beta, theta, g, slope, RESET, DELAYED, SAME)
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


@torch.library.custom_op("bntt_snntorch::bntt_statistics", mutates_args=())
def bntt_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's per-channel mean and biased variance of ``x`` ``(T, B, C, ...)`` (contiguous): two
    float32 ``(T, C)`` tensors, one kernel."""
    T, B, C, L = _layout(x)
    mean = torch.empty(T, C, dtype=torch.float32, device=x.device)
    var = torch.empty_like(mean)
    _stats_kernel[(T * C,)](x, mean, var, B, C, L, BLOCK=BLOCK)
    return mean, var


@bntt_statistics.register_fake
def _(x):
    stats = x.new_empty(x.shape[0], x.shape[2], dtype=torch.float32)
    return stats, torch.empty_like(stats)


def batch_statistics(x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's per-channel mean and biased variance of ``x_seq`` ``(T, B, C, ...)`` (float32 ``(T, C)``)."""
    return bntt_statistics(x_seq.detach().contiguous())


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


def backward(grad_spk, x, k, shift, mean, rstd, mem0, params, codes, surrogate, training: bool):
    """``(dL/dx, sum(dy * xhat) (T, C), dL/dbeta (of the clamped beta), dL/dtheta)`` from the spikes' gradient
    (``dy = dL/dcurrent``); ``dL/dx`` includes the statistics' dependence on ``x`` in training. ``surrogate``:
    ``(SURR, a, b)``."""
    T, B, C, L = _layout(x)
    chunks = triton.cdiv(B * L, BLOCK)
    mem = torch.empty(x.shape, dtype=torch.float32, device=x.device)  # transient: the recomputed membranes
    grad_x = torch.empty_like(x)  # dy first, then (in place) dL/dx
    sums = torch.zeros(T, C, 2, dtype=torch.float32, device=x.device)
    part = torch.empty(C * chunks, 2, dtype=torch.float32, device=x.device)
    RESET, DELAYED, SAME = codes
    SURR, a, b = surrogate
    _backward_kernel[(C, chunks)](
        grad_spk.contiguous(), x, k, shift, mean, mem0, mem, grad_x, sums, part, params, float(a), float(b), T, B, C,
        L, RESET=RESET, DELAYED=bool(DELAYED), SAME=SAME, SURR=int(SURR), ROUND=x.dtype != torch.float32, BLOCK=BLOCK,
    )  # fmt: skip
    del mem
    sum_dy_xhat, mean_dy, mean_dy_xhat = definition.gradient_moments(sums[..., 0], sums[..., 1], rstd, B * L)
    moments = torch.stack([mean_dy, mean_dy_xhat], dim=-1).contiguous()
    _input_grad_kernel[(C, chunks)](grad_x, x, k, mean, rstd, moments, T, B, C, L, TRAINING=training, BLOCK=BLOCK)
    totals = part.sum(0)
    return grad_x, sum_dy_xhat, totals[0], totals[1]


# -- one custom op for torch.compile and CUDA graphs ------------------------------------------------
@torch.library.custom_op("bntt_snntorch::bntt_leaky", mutates_args=())
def bntt_leaky(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    k: torch.Tensor,
    shift: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    mem0: torch.Tensor,
    params: torch.Tensor,
    codes: list[int],
    surrogate: list[float],
    training: bool,
    scale: float,
) -> torch.Tensor:
    """Spikes of the fused block. ``x`` ``(T, B, C, ...)`` contiguous; ``weight``: the gammas ``(T, C)`` (their
    gradient is this op's; None for ``affine=False``); ``k``, ``shift``, ``mean``, ``rstd`` ``(T, C)`` float32
    (computed from the gammas without a graph, the block's input ``scale`` folded in); ``mem0`` ``(B, C, ...)``
    float32; ``params`` = ``[beta, theta, g]``; ``codes`` = ``[RESET, DELAYED, SAME]``; ``surrogate`` =
    ``[SURR, a, b]``."""
    return forward(x, k, shift, mem0, params, codes)[0]


@bntt_leaky.register_fake
def _(x, weight, k, shift, mean, rstd, mem0, params, codes, surrogate, training, scale):
    return torch.empty_like(x)


@torch.library.custom_op("bntt_snntorch::bntt_leaky_backward", mutates_args=())
def bntt_leaky_backward(
    grad_spk: torch.Tensor,
    x: torch.Tensor,
    k: torch.Tensor,
    shift: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    mem0: torch.Tensor,
    params: torch.Tensor,
    codes: list[int],
    surrogate: list[float],
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dL/dx, sum(dy * xhat) (T, C), dL/dparams)`` of :func:`bntt_leaky`."""
    grad_x, sum_dy_xhat, grad_beta, grad_theta = backward(
        grad_spk, x, k, shift, mean, rstd, mem0, params, codes, surrogate, training
    )
    grad_beta = grad_beta * definition.leak_gradient_mask(params[0])
    return grad_x, sum_dy_xhat, torch.stack([grad_beta, grad_theta, torch.zeros_like(grad_beta)])


@bntt_leaky_backward.register_fake
def _(grad_spk, x, k, shift, mean, rstd, mem0, params, codes, surrogate, training):
    return torch.empty_like(x), torch.empty_like(k), torch.empty_like(params)


def _setup_context(ctx, inputs, output):
    x, weight, k, shift, mean, rstd, mem0, params, codes, surrogate, training, scale = inputs
    ctx.save_for_backward(x, k, shift, mean, rstd, mem0, params)
    ctx.static, ctx.scale, ctx.affine = (codes, surrogate, training), scale, weight is not None


def _backward(ctx, grad_spk):
    grad_x, sum_dy_xhat, grad_params = bntt_leaky_backward(grad_spk, *ctx.saved_tensors, *ctx.static)
    grad_weight = sum_dy_xhat * ctx.scale if ctx.affine and ctx.needs_input_grad[1] else None
    return grad_x, grad_weight, None, None, None, None, None, grad_params, None, None, None, None


bntt_leaky.register_autograd(_backward, setup_context=_setup_context)
