"""MultiStepLeaky (default backend: the fused scan) against snn.Leaky looped step by step, and the
seed neuron against the original code.

Tolerances (float32): spikes, membrane and input gradients 1e-5 abs / 1e-4 rel; beta and
threshold gradients (sums of ~10^3 terms in another order) 5e-4 relative to max(|grad|, 1)."""

import itertools
import zlib

import pytest
import snntorch as snn
import torch
from snntorch import surrogate as snn_surrogate

from bntt_snntorch import MultiStepLeaky, bntt_leaky, surrogate

from .helpers import assert_close

SURROGATES = {
    "snn.atan": snn_surrogate.atan,
    "snn.fast_sigmoid": snn_surrogate.fast_sigmoid,
    "ours.atan": surrogate.atan,
    "ours.triangle": surrogate.bntt_triangle,
}
COMBOS = list(itertools.product(["subtract", "zero", "none"], [True, False], sorted(SURROGATES), [False, True]))


def _snn_loop(lif: snn.Leaky, x_seq):
    mem = torch.zeros_like(x_seq[0])
    spikes, mems = [], []
    for x in x_seq:
        spk, mem = lif(x, mem)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("reset,delay,sg,learn", COMBOS)
def test_equals_snn_leaky_looped(reset, delay, sg, learn):
    g = torch.Generator().manual_seed(zlib.crc32(repr((reset, delay, sg, learn)).encode()))
    T, shape = 12, (3, 4, 5)
    beta = torch.rand(4, 1, generator=g) * 0.6 + 0.35  # per-channel beta, broadcast over (B, 4, 5)
    threshold = float(torch.rand(1, generator=g) * 0.8 + 0.6)
    gsf = float(torch.rand(1, generator=g) + 0.5)
    kwargs = dict(
        threshold=threshold,
        spike_grad=SURROGATES[sg](),
        learn_beta=learn,
        learn_threshold=learn,
        reset_mechanism=reset,
        reset_delay=delay,
        graded_spikes_factor=gsf,
    )
    ours = MultiStepLeaky(beta.clone(), **kwargs)
    ref = snn.Leaky(beta.clone(), **kwargs)
    x = torch.randn(T, *shape, generator=g) * 1.5 + 0.4
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    spk, mem = ours(x_ours)
    spk_ref, mem_ref = _snn_loop(ref, x_ref)
    assert spk.shape == mem.shape == x.shape
    assert spk.sum() > 0, "the test input must make the layer fire"
    assert_close(spk, spk_ref, atol=1e-5, rtol=1e-4, msg="spikes")
    assert_close(mem, mem_ref, atol=1e-5, rtol=1e-4, msg="membrane")
    g_spk, g_mem = torch.randn_like(spk), torch.randn_like(mem)
    ((spk * g_spk).sum() + (mem * g_mem).sum()).backward()
    ((spk_ref * g_spk).sum() + (mem_ref * g_mem).sum()).backward()
    assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=1e-4, msg="input grad")
    if learn:
        for name in ("beta", "threshold"):
            a, b = getattr(ours, name).grad, getattr(ref, name).grad
            scale = b.abs().max().clamp(min=1.0)
            assert_close(a / scale, b / scale, atol=5e-4, rtol=0, msg=f"{name} grad")


def test_step_api_matches_sequence_and_snn_state_dict_loads():
    ref = snn.Leaky(0.8, learn_beta=True)
    ours = MultiStepLeaky(0.5, learn_beta=True)
    ours.load_state_dict(ref.state_dict())
    assert float(ours.beta.detach()) == pytest.approx(0.8)
    x = torch.randn(6, 2, 7) + 0.8
    spk_seq, mem_seq = ours(x)
    mem = None
    for t in range(6):
        spk, mem = ours.step(x[t], mem)
        assert torch.equal(spk, spk_seq[t])
        assert_close(mem, mem_seq[t], atol=1e-6)


def test_sequence_shape_error():
    with pytest.raises(ValueError, match=r"\(T, B, \.\.\.\), got shape \(5,\)"):
        MultiStepLeaky(0.9)(torch.randn(5))


class _OriginalSpikeAct(torch.autograd.Function):
    """The BNTT repository's spike function, transcribed: input is U/theta - 1."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 0.3 * torch.nn.functional.threshold(1.0 - torch.abs(x), 0, 0)


@pytest.mark.parametrize("theta", [1.0, 0.7])
def test_seed_neuron_equals_original_code(theta):
    leak, T = 0.95, 15
    x = torch.randn(T, 4, 8) * 1.2 + 0.3
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    spk, _ = bntt_leaky(leak, theta)(x_ours)
    mem, out = torch.zeros(4, 8), []
    for t in range(T):
        mem = leak * mem + x_ref[t]
        mem_thr = mem / theta - 1.0
        s = _OriginalSpikeAct.apply(mem_thr)
        rst = torch.zeros_like(mem)
        rst[mem_thr > 0] = theta
        mem = mem - rst
        out.append(s)
    ref = torch.stack(out)
    assert_close(spk, ref, msg="spikes")
    g = torch.randn_like(ref)
    (spk * g).sum().backward()
    (ref * g).sum().backward()
    assert_close(x_ours.grad, x_ref.grad, atol=1e-6, msg="input grad")


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (surrogate.atan(3.0), snn_surrogate.atan(3.0)),
        (surrogate.fast_sigmoid(10), snn_surrogate.fast_sigmoid(10)),
        (surrogate.sigmoid(5), snn_surrogate.sigmoid(5)),
        (surrogate.straight_through(), snn_surrogate.straight_through_estimator()),
    ],
)
def test_surrogates_match_snntorch(ours, theirs):
    x = torch.linspace(-2, 2, 101)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert torch.equal(ours(a), theirs(b))
    ours(a).sum().backward()
    theirs(b).sum().backward()
    assert_close(a.grad, b.grad, atol=1e-6)
    assert_close(ours.derivative(x), a.grad, atol=1e-6)


def test_bntt_triangle_values():
    tri = surrogate.bntt_triangle(0.3, 2.0)
    x = torch.tensor([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0])
    assert_close(tri.derivative(x), torch.tensor([0.0, 0.0, 0.075, 0.15, 0.075, 0.0]))
