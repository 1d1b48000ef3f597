"""The leaky scan as two Triton kernels (forward, reverse), one program per block of neurons.

Each program keeps its neurons' membrane in registers and walks the T steps, calling the one neuron
definition (:mod:`bntt_snntorch.definition`, compiled for Triton by :mod:`.triton_definition`): the
forward reads ``x`` once and writes ``spk``, ``mem`` and ``h`` once; the backward reads them once in
reverse and writes ``grad_x``. Scalar beta, threshold and graded-spikes factor, passed as one
``[beta, theta, g]`` tensor (no host read); per-channel tensors use the torch scan. Runs on CUDA,
and on CPU under ``TRITON_INTERPRET=1`` (how the tests check it without a GPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import definition
from .torch_scan import NeuronSpec, NeuronTensors, membrane_sequence, params_tensor
from .triton_definition import T as D

BLOCK = 1024


@triton.jit
def _forward_kernel(
    x_ptr, m0_ptr, spk_ptr, mem_ptr, h_ptr, params_ptr, T, N,
    RESET: tl.constexpr, DELAYED: tl.constexpr, SAME: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    beta = D.clamp_leak(tl.load(params_ptr))
    theta = tl.load(params_ptr + 1)
    g = tl.load(params_ptr + 2)
    m = tl.load(m0_ptr + offs, mask=mask, other=0.0)
    x_ptr += offs  # pointers walk one step (N elements) per iteration: no int32 overflow
    spk_ptr += offs
    mem_ptr += offs
    h_ptr += offs
    for _ in range(T):
        x = tl.load(x_ptr, mask=mask, other=0.0).to(tl.float32)
        h, m, spk = D.forward_step(x, m, beta, theta, g, RESET, DELAYED, SAME)
        tl.store(spk_ptr, spk.to(spk_ptr.dtype.element_ty), mask=mask)
        tl.store(mem_ptr, m, mask=mask)
        tl.store(h_ptr, h, mask=mask)
        x_ptr += N
        spk_ptr += N
        mem_ptr += N
        h_ptr += N


@triton.jit
def _backward_kernel(
    gs_ptr, gm_ptr, h_ptr, mem_ptr, m0_ptr, gx_ptr, gm0_ptr, part_ptr, params_ptr, a, b, T, N, last,
    RESET: tl.constexpr, DELAYED: tl.constexpr, SAME: tl.constexpr, SURR: tl.constexpr,
    HAS_GS: tl.constexpr, HAS_GM: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    beta = D.clamp_leak(tl.load(params_ptr))
    theta = tl.load(params_ptr + 1)
    g = tl.load(params_ptr + 2)
    carry = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_beta = tl.zeros((BLOCK,), dtype=tl.float32)
    acc_theta = tl.zeros((BLOCK,), dtype=tl.float32)
    # Pointers start at step T-1 (``last`` = (T-1)*N, from the host) and walk back N per step.
    gs_ptr += last + offs
    gm_ptr += last + offs
    h_ptr += last + offs
    gx_ptr += last + offs
    prev_ptr = mem_ptr + last + offs - N
    for i in range(T):
        h = tl.load(h_ptr, mask=mask, other=0.0)
        if i < T - 1:
            m_prev = tl.load(prev_ptr, mask=mask, other=0.0)
        else:
            m_prev = tl.load(m0_ptr + offs, mask=mask, other=0.0)
        delta_m = carry
        if HAS_GM:
            delta_m += tl.load(gm_ptr, mask=mask, other=0.0)
        gs = carry * 0.0
        if HAS_GS:
            gs = tl.load(gs_ptr, mask=mask, other=0.0).to(tl.float32)
        slope = D.surrogate_derivative(h - theta, a, b, SURR)
        delta_h, carry, beta_t, theta_t = D.backward_step(
            gs, delta_m, h, m_prev, beta, theta, g, slope, RESET, DELAYED, SAME
        )
        tl.store(gx_ptr, delta_h.to(gx_ptr.dtype.element_ty), mask=mask)
        acc_beta += tl.where(mask, beta_t, 0.0)
        acc_theta += tl.where(mask, theta_t, 0.0)
        gs_ptr -= N
        gm_ptr -= N
        h_ptr -= N
        gx_ptr -= N
        prev_ptr -= N
    tl.store(gm0_ptr + offs, carry, mask=mask)
    tl.store(part_ptr + pid * 2, tl.sum(acc_beta, axis=0))
    tl.store(part_ptr + pid * 2 + 1, tl.sum(acc_theta, axis=0))


class LeakyScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, mem0, params, spec: NeuronSpec):
        x = x_seq.contiguous()
        T, N = x.shape[0], x[0].numel()
        m0 = mem0.contiguous()
        spk = torch.empty_like(x)  # the input's dtype; membrane and h in float32
        mem, h = torch.empty_like(x, dtype=torch.float32), torch.empty_like(x, dtype=torch.float32)
        RESET, DELAYED, SAME = spec.variant.codes
        grid = (triton.cdiv(N, BLOCK),)
        _forward_kernel[grid](x, m0, spk, mem, h, params, T, N, RESET=RESET, DELAYED=DELAYED, SAME=SAME, BLOCK=BLOCK)
        ctx.save_for_backward(h, m0, params)  # the membrane is recomputed from h in backward
        ctx.spec, ctx.x_dtype = spec, x.dtype
        return spk, mem

    @staticmethod
    def backward(ctx, grad_spk, grad_mem):
        h, m0, params = ctx.saved_tensors
        spec: NeuronSpec = ctx.spec
        mem = membrane_sequence(h, m0, params[1], spec.variant).contiguous()
        T, N = h.shape[0], h[0].numel()
        programs = triton.cdiv(N, BLOCK)
        grad_x, grad_m0 = torch.empty_like(h, dtype=ctx.x_dtype), torch.empty_like(m0)
        part = torch.empty(programs, 2, device=h.device, dtype=torch.float32)
        a, b = spec.surrogate.args()
        RESET, DELAYED, SAME = spec.variant.codes
        gs = grad_spk.contiguous() if grad_spk is not None else h
        gm = grad_mem.contiguous() if grad_mem is not None else h
        _backward_kernel[(programs,)](
            gs, gm, h, mem, m0, grad_x, grad_m0, part, params, float(a), float(b), T, N, (T - 1) * N,
            RESET=RESET, DELAYED=DELAYED, SAME=SAME, SURR=spec.surrogate.code,
            HAS_GS=grad_spk is not None, HAS_GM=grad_mem is not None, BLOCK=BLOCK,
        )  # fmt: skip
        totals = part.sum(0)
        d_beta = totals[0] * definition.leak_gradient_mask(params[0])
        grad_params = torch.stack([d_beta, totals[1], torch.zeros_like(totals[0])])
        return grad_x, grad_m0, grad_params, None


def leaky_scan_triton(x_seq: torch.Tensor, mem0: torch.Tensor, tensors: NeuronTensors, spec: NeuronSpec):
    """``(spk_seq, mem_seq)`` for ``x_seq`` ``(T, B, ...)`` (spikes in its dtype, membrane float32)."""
    return LeakyScanTriton.apply(x_seq, mem0, params_tensor(tensors), spec)
