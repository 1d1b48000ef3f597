"""The leaky scan as two Triton kernels (forward, reverse), one program per block of neurons.

Each program keeps its neurons' membrane in registers and walks the T steps,
so the forward reads ``x`` once and writes ``spk``, ``mem`` and ``h`` once;
the backward reads them once in reverse and writes ``grad_x``. Scalar beta,
threshold and graded-spikes factor; per-channel tensors use the torch scan.
Runs on CUDA, and on CPU under ``TRITON_INTERPRET=1`` (how the tests check it
without a GPU).
"""

from __future__ import annotations

import os

import torch

from .. import surrogate as sg
from ..functional import LeakyParams
from .scan_math import ScanMode, clamp_grad_mask, membrane_sequence

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where Triton is absent
    triton = None

_SURROGATE_IDS = {sg.BNTTTriangle: 0, sg.ATan: 1, sg.FastSigmoid: 2, sg.Sigmoid: 3, sg.StraightThrough: 4}
_RESET_IDS = {"subtract": 0, "zero": 1, "none": 2}
_SAME_IDS = {"none": 0, "snn": 1, "detached": 2}
BLOCK = 1024


def available(x: torch.Tensor) -> bool:
    """Triton is importable and ``x`` is on CUDA (or the Triton interpreter is on)."""
    return triton is not None and (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


def supports(p: LeakyParams) -> bool:
    """Scalar parameters and a surrogate with a Triton derivative."""
    scalar = all(torch.as_tensor(v).numel() == 1 for v in (p.beta, p.threshold, p.graded_spikes_factor))
    return scalar and type(p.spike_grad) in _SURROGATE_IDS


def _surrogate_args(s: sg.Surrogate) -> tuple[int, float, float]:
    if isinstance(s, sg.BNTTTriangle):
        return 0, s.scale, s.width
    if isinstance(s, (sg.ATan,)):
        return 1, s.alpha, 0.0
    if isinstance(s, (sg.FastSigmoid, sg.Sigmoid)):
        return _SURROGATE_IDS[type(s)], s.slope, 0.0
    return 4, 0.0, 0.0


if triton is not None:

    @triton.jit
    def _slope(z, SURR: tl.constexpr, a, b):
        if SURR == 0:
            return a / b * tl.maximum(1.0 - tl.abs(z) / b, 0.0)
        elif SURR == 1:
            u = 1.5707963267948966 * a * z  # pi / 2 * alpha * x
            return a / 2.0 / (1.0 + u * u)
        elif SURR == 2:
            d = a * tl.abs(z) + 1.0
            return 1.0 / (d * d)
        elif SURR == 3:
            s = 1.0 / (1.0 + tl.exp(-a * z))
            return a * s * (1.0 - s)
        else:
            return z * 0.0 + 1.0

    @triton.jit
    def _forward_kernel(
        x_ptr,
        m0_ptr,
        spk_ptr,
        mem_ptr,
        h_ptr,
        beta_ptr,
        theta_ptr,
        g_ptr,
        T,
        N,
        RESET: tl.constexpr,
        DELAYED: tl.constexpr,
        SAME: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        beta = tl.minimum(tl.maximum(tl.load(beta_ptr), 0.0), 1.0)
        theta = tl.load(theta_ptr)
        g = tl.load(g_ptr)
        m = tl.load(m0_ptr + offs, mask=mask, other=0.0)
        x_ptr += offs  # pointers walk one step (N elements) per iteration: no int32 overflow
        spk_ptr += offs
        mem_ptr += offs
        h_ptr += offs
        for _ in range(T):
            x = tl.load(x_ptr, mask=mask, other=0.0).to(tl.float32)
            r = tl.where(m - theta > 0, 1.0, 0.0)
            if DELAYED:
                if RESET == 0:
                    h = beta * m + x - r * theta
                else:
                    h = beta * ((1.0 - r) * m) + x
            else:
                h = beta * m + x
            fired = tl.where(h - theta > 0, 1.0, 0.0)
            if SAME == 1:
                if RESET == 0:
                    m = h - (fired - r) * theta
                else:
                    m = h - (fired - r) * h
            elif SAME == 2:
                if RESET == 0:
                    m = h - fired * theta
                else:
                    m = h * (1.0 - fired)
            else:
                m = h
            tl.store(spk_ptr, fired * g, mask=mask)
            tl.store(mem_ptr, m, mask=mask)
            tl.store(h_ptr, h, mask=mask)
            x_ptr += N
            spk_ptr += N
            mem_ptr += N
            h_ptr += N

    @triton.jit
    def _backward_kernel(
        gs_ptr,
        gm_ptr,
        h_ptr,
        mem_ptr,
        m0_ptr,
        gx_ptr,
        gm0_ptr,
        gbeta_ptr,
        gtheta_ptr,
        beta_ptr,
        theta_ptr,
        g_ptr,
        a,
        b,
        T,
        N,
        last,
        RESET: tl.constexpr,
        DELAYED: tl.constexpr,
        SAME: tl.constexpr,
        SURR: tl.constexpr,
        HAS_GS: tl.constexpr,
        HAS_GM: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        beta = tl.minimum(tl.maximum(tl.load(beta_ptr), 0.0), 1.0)
        theta = tl.load(theta_ptr)
        g = tl.load(g_ptr)
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
            z = h - theta
            slope = _slope(z, SURR, a, b)
            fired = tl.where(z > 0, 1.0, 0.0)
            r = tl.where(m_prev - theta > 0, 1.0, 0.0)
            fire_grad = carry * 0.0
            if HAS_GS:
                fire_grad = tl.load(gs_ptr, mask=mask, other=0.0).to(tl.float32) * g * slope
            d_theta = -fire_grad
            if SAME == 1:
                if RESET == 0:
                    delta_h = delta_m * (1.0 - theta * slope) + fire_grad
                    d_theta += delta_m * (theta * slope - (fired - r))
                else:
                    delta_h = delta_m * ((1.0 - fired + r) - h * slope) + fire_grad
                    d_theta += delta_m * h * slope
            elif SAME == 2:
                if RESET == 0:
                    delta_h = delta_m + fire_grad
                    d_theta -= delta_m * fired
                else:
                    delta_h = delta_m * (1.0 - fired) + fire_grad
            else:
                delta_h = delta_m + fire_grad
            keep = carry * 0.0 + 1.0
            if DELAYED:
                if RESET == 0:
                    d_theta -= delta_h * r
                else:
                    keep = 1.0 - r
            tl.store(gx_ptr, delta_h, mask=mask)
            carry = delta_h * beta * keep
            acc_beta += tl.where(mask, delta_h * keep * m_prev, 0.0)
            acc_theta += tl.where(mask, d_theta, 0.0)
            gs_ptr -= N
            gm_ptr -= N
            h_ptr -= N
            gx_ptr -= N
            prev_ptr -= N
        tl.store(gm0_ptr + offs, carry, mask=mask)
        tl.store(gbeta_ptr + pid, tl.sum(acc_beta, axis=0))
        tl.store(gtheta_ptr + pid, tl.sum(acc_theta, axis=0))


def _mode_args(mode: ScanMode) -> dict:
    return dict(RESET=_RESET_IDS[mode.reset], DELAYED=mode.delayed_reset, SAME=_SAME_IDS[mode.same_step_reset])


class LeakyScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, mem0, beta, theta, g, surrogate, mode: ScanMode):
        x = x_seq.contiguous()
        T, N = x.shape[0], x[0].numel()
        m0 = mem0.contiguous()
        spk = torch.empty_like(x)  # the input's dtype; membrane and h in float32
        mem, h = torch.empty_like(x, dtype=torch.float32), torch.empty_like(x, dtype=torch.float32)
        beta_, theta_, g_ = (v.reshape(1).contiguous() for v in (beta, theta, g))
        grid = (triton.cdiv(N, BLOCK),)
        _forward_kernel[grid](x, m0, spk, mem, h, beta_, theta_, g_, T, N, BLOCK=BLOCK, **_mode_args(mode))
        ctx.save_for_backward(h, m0, beta, theta, g)  # the membrane is recomputed from h in backward
        ctx.surrogate, ctx.mode, ctx.x_dtype = surrogate, mode, x.dtype
        return spk, mem

    @staticmethod
    def backward(ctx, grad_spk, grad_mem):
        h, m0, beta, theta, g = ctx.saved_tensors
        mem = membrane_sequence(h, m0, theta, ctx.mode)
        T, N = h.shape[0], h[0].numel()
        programs = triton.cdiv(N, BLOCK)
        grad_x, grad_m0 = torch.empty_like(h, dtype=ctx.x_dtype), torch.empty_like(m0)
        part_beta = torch.empty(programs, device=h.device, dtype=torch.float32)
        part_theta = torch.empty_like(part_beta)
        surr, a, b = _surrogate_args(ctx.surrogate)
        gs = grad_spk.contiguous() if grad_spk is not None else h
        gm = grad_mem.contiguous() if grad_mem is not None else h
        beta_, theta_, g_ = (v.reshape(1).contiguous() for v in (beta, theta, g))
        _backward_kernel[(programs,)](
            gs,
            gm,
            h,
            mem,
            m0,
            grad_x,
            grad_m0,
            part_beta,
            part_theta,
            beta_,
            theta_,
            g_,
            float(a),
            float(b),
            T,
            N,
            (T - 1) * N,
            SURR=surr,
            HAS_GS=grad_spk is not None,
            HAS_GM=grad_mem is not None,
            BLOCK=BLOCK,
            **_mode_args(ctx.mode),
        )
        grad_beta = grad_theta = None
        if ctx.needs_input_grad[2]:
            grad_beta = (part_beta.sum() * clamp_grad_mask(beta)).reshape(beta.shape)
        if ctx.needs_input_grad[3]:
            grad_theta = part_theta.sum().reshape(theta.shape)
        return grad_x, grad_m0, grad_beta, grad_theta, None, None, None


def leaky_scan_triton(x_seq, mem0, beta, theta, g, surrogate, mode: ScanMode):
    """``(spk_seq, mem_seq)`` for ``x_seq`` ``(T, B, ...)`` on CUDA (spikes in its dtype, membrane float32)."""
    return LeakyScanTriton.apply(x_seq, mem0, beta, theta, g, surrogate, mode)
