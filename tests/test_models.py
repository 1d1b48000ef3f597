"""Every registered model: multi-step forward equals the per-step loop (logits, all parameter
gradients, BNTT running statistics) with one state dict. Tolerance 1e-4 abs / 1e-4 rel (float32,
deep nets sum many terms in a different order). Plus seed-exactness of the BNTT VGGs."""

import copy
import math

import pytest
import torch
from torch import nn

from bntt_snntorch import BatchNormTT1d, BatchNormTT2d, encoding
from bntt_snntorch.models import create_model, is_ann, list_models

from .helpers import assert_close, rel

SMALL = {
    "vgg9": dict(image_size=16),
    "vgg11": dict(image_size=32),
    "bntt_digits": dict(),
    "rvd_vgg9": dict(image_size=16),
    "rvd_vgg5": dict(image_size=16),
    "rvd_mlp": dict(image_size=8),
}


SPIKING = [m for m in list_models() if not is_ann(m)]


def _input(model, batch, steps, size):
    x = torch.randn(batch, model.in_channels, size, size)
    return encoding.encode(x, steps, "p", torch.Generator().manual_seed(5))


@pytest.mark.parametrize("name", SPIKING)
def test_multistep_equals_per_step(name):
    kwargs = dict(num_steps=4, num_classes=7, **SMALL.get(name, {}))
    fast = create_model(name, **kwargs)
    slow = copy.deepcopy(fast)
    size = kwargs.get("image_size", 8)
    x = _input(fast, 3, 3, size)  # T'=3 < num_steps: early-exit shaped input works too
    for mode in ("train", "eval"):
        fast.train(mode == "train"), slow.train(mode == "train")
        y_fast, y_slow = fast(x), slow.forward_per_step(x)
        assert y_fast.shape == (3, 7)
        assert_close(y_fast, y_slow, atol=1e-4, rtol=1e-4, msg=f"{mode} logits")
    fast.zero_grad(), slow.zero_grad()
    fast.train(), slow.train()
    g = torch.randn(3, 7)
    (fast(x) * g).sum().backward()
    (slow.forward_per_step(x) * g).sum().backward()
    grads = 0
    for (n, p_fast), p_slow in zip(fast.named_parameters(), slow.parameters()):
        if p_slow.grad is None:
            assert p_fast.grad is None, n
            continue
        grads += 1
        scale = p_slow.grad.abs().max().clamp(min=1e-3)
        assert_close(p_fast.grad / scale, p_slow.grad / scale, atol=1e-4, rtol=1e-4, msg=f"grad {n}")
    assert grads > 0
    for (n, b_fast), b_slow in zip(fast.named_buffers(), slow.buffers()):
        assert_close(b_fast.float(), b_slow.float(), atol=1e-4, rtol=1e-4, msg=f"buffer {n}")


@pytest.mark.parametrize("name", SPIKING)
def test_state_dict_round_trip(name, tmp_path):
    kwargs = dict(num_steps=2, **SMALL.get(name, {}))
    a, b = create_model(name, **kwargs).eval(), create_model(name, **kwargs).eval()
    torch.save(a.state_dict(), tmp_path / "m.pt")
    b.load_state_dict(torch.load(tmp_path / "m.pt"))
    x = _input(a, 2, 2, kwargs.get("image_size", 8))
    assert torch.equal(a(x), b(x))
    assert_close(a.forward_per_step(x), b(x), atol=1e-5, rtol=1e-5)


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(
    "name,widths,pools,fc_in,hidden",
    [
        ("vgg9", [64, 64, 128, 128, 256, 256, 256], ["A", "A", "A"], 4096, 1024),
        ("vgg11", [64, 128, 256, 256, 512, 512, 512, 512], ["A", "A", "A", "A", "G"], 512, 4096),
    ],
)
def test_bntt_vgg_is_seed_exact(name, widths, pools, fc_in, hidden):
    model = create_model(name, num_classes=100, num_steps=3, leak_mem=0.9)
    convs = _convs(model)
    assert [c.out_channels for c in convs] == widths
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is None for c in convs)
    seen_pools = [
        "A" if isinstance(m, nn.AvgPool2d) else "G"
        for m in model.modules()
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))
    ]
    assert seen_pools == pools
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(fc_in, hidden), (hidden, 100)]
    assert all(fc.bias is None for fc in linears)
    bns = [m for m in model.modules() if isinstance(m, (BatchNormTT1d, BatchNormTT2d))]
    assert len(bns) == len(widths) + 1 and all(len(b) == 3 and b[0].eps == 1e-4 for b in bns)
    neurons = [b.neuron for b in model.features if hasattr(b, "neuron")]
    assert all(float(n.beta) == pytest.approx(0.9) and n.detach_reset for n in neurons)
    for layer in convs + linears:  # Xavier-uniform, gain 2: U(-a, a), a = 2 * sqrt(6 / (fan_in + fan_out))
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = 2 * math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_create_model_drops_none_and_names_unknown():
    m = create_model("vgg9", num_steps=None, num_classes=None)
    assert m.num_steps == 25 and m.classifier.out_features == 10
    with pytest.raises(ValueError, match="available: .*vgg9"):
        create_model("resnet")


def test_wrong_input_shape_says_expected_and_got():
    m = create_model("bntt_digits", num_steps=4)
    with pytest.raises(ValueError, match=r"\(T, B, C=1, H, W\), got shape \(2, 1, 8, 8\)"):
        m(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="num_steps=4, got a sequence of 6 steps"):
        m(torch.randn(6, 2, 1, 8, 8))


@pytest.mark.parametrize("name,kwargs", [("bntt_digits", {}), ("vgg9", dict(image_size=16))])
def test_bf16_autocast_multistep_matches_per_step_under_the_same_autocast(name, kwargs):
    """bf16 rounds convolutions differently for a (T*B) batch than for B; spikes near the threshold
    may flip. Stated tolerance: logits and gradients within 2 % / 5 % relative L2 (measured ~0.3 %)."""
    fast = create_model(name, num_steps=4, **kwargs)
    slow = copy.deepcopy(fast)
    size = kwargs.get("image_size", 8)
    x = _input(fast, 16, 4, size)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_fast, y_slow = fast(x), slow.forward_per_step(x)
    assert y_fast.dtype == torch.bfloat16
    assert rel(y_fast, y_slow) < 0.02
    g = torch.randn_like(y_fast.float())
    (y_fast.float() * g).sum().backward()
    (y_slow.float() * g).sum().backward()
    for (n, a), b in zip(fast.named_parameters(), slow.parameters()):
        if b.grad is not None and b.grad.norm() > 0:
            assert rel(a.grad, b.grad) < 0.05, n


def test_channels_last_equals_per_step():
    fast = create_model("vgg9", num_steps=3, image_size=16)
    slow = copy.deepcopy(fast)
    fast = fast.to(memory_format=torch.channels_last)
    assert fast.features[0].synapse.weight.is_contiguous(memory_format=torch.channels_last)
    x = _input(fast, 4, 3, 16)
    y_fast, y_slow = fast(x), slow.forward_per_step(x)
    assert_close(y_fast, y_slow, atol=1e-4, rtol=1e-4)
    y_fast.sum().backward(), y_slow.sum().backward()
    w_fast, w_slow = fast.features[0].synapse.weight.grad, slow.features[0].synapse.weight.grad
    assert_close(w_fast / w_slow.abs().max(), w_slow / w_slow.abs().max(), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["c", "auto"])
def test_torch_compile_equals_per_step(kernels, monkeypatch):
    """torch.compile around the model: the plan is decided while tracing, outside the graph, and each block's fused
    node is one torch.library op, so the whole model is one graph (no break) on the C loops and under auto (with
    nothing measured yet: the eager steps, as BNTT_KERNELS=eager gives). Tolerance 1e-4 on the logits and every
    parameter's gradient (each gets one), 1e-5 on the running statistics."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("BNTT_KERNELS", kernels)
    torch._dynamo.reset()  # no graph traced under the other setting is reused
    counters.clear()
    fast = create_model("bntt_digits", num_steps=3)
    slow = copy.deepcopy(fast)
    compiled = torch.compile(fast, dynamic=False)
    x = _input(fast, 8, 3, 8)
    y_fast, y_slow = compiled(x), slow.forward_per_step(x)
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert_close(y_fast, y_slow, atol=1e-4, rtol=1e-4)
    g = torch.randn_like(y_fast)
    (y_fast * g).sum().backward(), (y_slow * g).sum().backward()
    for (n, a), b in zip(fast.named_parameters(), slow.parameters()):
        assert a.grad is not None, f"{n} got no gradient"
        scale = b.grad.abs().max().clamp(min=1e-3)
        assert_close(a.grad / scale, b.grad / scale, atol=1e-4, rtol=1e-4, msg=n)
    for (n, a), b in zip(fast.named_buffers(), slow.buffers()):
        assert_close(a.float(), b.float(), atol=1e-5, rtol=1e-5, msg=n)
