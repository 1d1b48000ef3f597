"""Fused leaky scans against the per-step reference (functional.leaky_sequence_reference); the Triton
cases run on CUDA, or on CPU under the interpreter (tests/test_kernels_interpreted.py starts that run).

Random inputs and parameters per case (seeded from the case's name); every reset variant, every
closed-form surrogate, learnable beta (per channel) and threshold. Tolerances (float32): spikes,
membrane, input and initial-state gradients 1e-5 abs / 1e-4 rel; beta and threshold gradients,
which sum ~10^4 terms in a different order, 5e-4 relative to max(|grad|, 1)."""

import itertools
import os
import zlib

import pytest
import torch

from bntt_snntorch import MultiStepLeaky, surrogate
from bntt_snntorch.functional import leaky_sequence_reference
from bntt_snntorch.kernels import choose_plan, leaky_scan

from .helpers import VARIANTS, assert_close, learnable_leaky

SURROGATES = [
    surrogate.bntt_triangle(0.3, 1.0),
    surrogate.atan(2.0),
    surrogate.fast_sigmoid(5.0),
    surrogate.sigmoid(4.0),
]
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
FUSED = [("torch", "cpu")]
FUSED += [("triton", "cuda")] if torch.cuda.is_available() else []
FUSED += [("triton", "cpu")] if INTERPRET else []


def _case(variant, sg, device, per_channel, seed):
    g = torch.Generator().manual_seed(seed)
    beta = (torch.rand(5, 1, 1, generator=g) * 0.5 + 0.45) if per_channel else torch.tensor(0.9)
    threshold = torch.tensor(float(torch.rand(1, generator=g)) * 0.6 + 0.7)
    lif = learnable_leaky(MultiStepLeaky, beta, threshold, sg, variant).to(device)
    x = (torch.randn(9, 4, 5, 3, 3, generator=g) * 1.5 + 0.5).to(device)
    mem0 = (torch.randn(4, 5, 3, 3, generator=g) * 0.5).to(device)
    return lif, x, mem0


def _run(lif, x, mem0, backend):
    x = x.clone().requires_grad_()
    mem0 = mem0.clone().requires_grad_()
    lif.zero_grad()
    p = lif.params()
    if backend == "reference":
        spk, mem = leaky_sequence_reference(x, p, mem0)
    else:
        spk, mem = leaky_scan(x, p, mem0, backend)
    gen = torch.Generator().manual_seed(7)
    w_spk = torch.randn(spk.shape, generator=gen).to(x.device)
    w_mem = torch.randn(mem.shape, generator=gen).to(x.device)
    ((spk * w_spk).sum() + (mem * w_mem).sum()).backward()
    return spk.detach(), mem.detach(), x.grad, mem0.grad, lif.beta.grad.clone(), lif.threshold.grad.clone()


@pytest.mark.parametrize("backend,device", FUSED)
@pytest.mark.parametrize(
    "variant,sg,per_channel",
    [(v, s, pc) for (v, s), pc in zip(itertools.product(VARIANTS, SURROGATES), itertools.cycle([True, False, False]))],
)
def test_fused_scan_equals_reference(backend, device, variant, sg, per_channel):
    per_channel = per_channel and backend != "triton"  # Triton takes scalar parameters
    seed = zlib.crc32(repr((variant, sg, per_channel)).encode())
    lif, x, mem0 = _case(variant, sg, device, per_channel, seed)
    ref = _run(lif, x, mem0, "reference")
    out = _run(lif, x, mem0, backend)
    assert ref[0].sum() > 0
    names = ["spikes", "membrane", "grad x", "grad mem0", "grad beta", "grad threshold"]
    for name, a, b in zip(names, out, ref):
        if name in ("grad beta", "grad threshold"):
            scale = b.abs().max().clamp(min=1.0)
            assert_close(a / scale, b / scale, atol=5e-4, rtol=0, msg=f"{backend} {variant} {sg}: {name}")
        else:
            assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"{backend} {variant} {sg}: {name}")


def test_auto_backend_choice(monkeypatch):
    monkeypatch.delenv("BNTT_KERNELS", raising=False)
    x = torch.zeros(2, 3)
    ours = MultiStepLeaky(0.9).params()
    assert choose_plan(x, ours).path == "torch"
    from snntorch import surrogate as snn_surrogate

    snn_sg = MultiStepLeaky(0.9, spike_grad=snn_surrogate.atan()).params()
    plan = choose_plan(x, snn_sg)
    assert plan.path == "reference" and "closed-form derivative" in plan.reason
    with pytest.raises(ValueError, match="closed-form derivative"):
        choose_plan(x, snn_sg, "torch")
    if not torch.cuda.is_available() and not INTERPRET:
        with pytest.raises(ValueError, match="backend='triton': Triton is not installed or cannot run"):
            choose_plan(x, ours, "triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_plan(x, ours, "cuda")
    monkeypatch.setenv("BNTT_KERNELS", "fast")
    with pytest.raises(ValueError, match="BNTT_KERNELS must be one of auto, eager, c, triton"):
        choose_plan(x, ours)


def test_fused_scan_under_bf16_autocast_keeps_fp32_membrane():
    lif = MultiStepLeaky(0.9, spike_grad=surrogate.bntt_triangle())
    x = torch.randn(6, 3, 8) + 0.5
    spk32, mem32 = lif(x)
    spk16, mem16 = lif(x.bfloat16())
    assert spk16.dtype == torch.bfloat16 and mem16.dtype == torch.float32
    agree = (spk16.float() == spk32).float().mean()
    assert agree > 0.97  # the input rounding to bf16 flips only spikes that sit at the threshold


def test_auto_falls_back_to_torch_when_triton_fails_and_explain_says_so(monkeypatch):
    from triton.runtime.errors import OutOfResources

    from bntt_snntorch import kernels
    from bntt_snntorch.kernels import Plan, explain, triton_scan
    from bntt_snntorch.kernels import fallback as fallback_module
    from bntt_snntorch.kernels import plan as plan_module

    def broken(*args, **kwargs):
        raise OutOfResources(232448, 101376, "shared memory: no kernel image for this GPU")

    monkeypatch.setattr(kernels, "choose_plan", lambda x, p, backend="auto", bntt=False: Plan("triton", "forced"))
    monkeypatch.setattr(triton_scan, "leaky_scan_triton", broken)
    monkeypatch.setattr(fallback_module, "FALLBACKS", {})
    monkeypatch.setattr(plan_module, "triton_usable", lambda device: True)
    monkeypatch.setenv("BNTT_KERNELS", "triton")
    lif = MultiStepLeaky(0.9, spike_grad=surrogate.bntt_triangle())
    x = torch.randn(5, 3, 4) + 0.5
    with pytest.warns(UserWarning, match="triton kernels cannot run here .*no kernel image"):
        spk, mem = leaky_scan(x, lif.params(), plan=Plan("triton", "forced"))
    ref_spk, ref_mem = leaky_sequence_reference(x, lif.params())
    assert torch.equal(spk, ref_spk) and "no kernel image" in fallback_module.FALLBACKS["triton"]
    (line,) = explain(lif, x)  # later plans take the torch scan and say why
    assert line.path == "torch" and "fallback" in line.reason and "no kernel image" in line.reason
