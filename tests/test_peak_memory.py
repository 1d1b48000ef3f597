"""The training step's peak: the fused nodes write dL/dcurrent over dL/dspikes where nothing else holds it, and the
synapse's backward from int8 codes runs on chunks of the batch. Values and gradients as before: the in-place
backward bit for bit; the chunked synapse gradients within float rounding (1e-5 / 1e-4, as tests/test_lean.py's
synapse tests)."""

import copy
import sys

import pytest
import torch

import bntt_snntorch as bs
from bntt_snntorch.kernels import spike_synapse
from bntt_snntorch.kernels.overwrite import overwritable
from bntt_snntorch.layers import SpikingBlock, mark_spike_inputs

from .helpers import assert_close


class _Check(torch.autograd.Function):
    """Records whether its backward may overwrite the gradient it gets."""

    seen = []

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        _Check.seen.append(overwritable(grad, torch.empty_like(grad), sys.getrefcount(grad)))
        return grad


def test_only_a_gradient_nobody_else_holds_is_overwritable():
    x = torch.randn(3, 4, requires_grad=True)
    _Check.seen.clear()
    (_Check.apply(x) * 2).sum().backward()  # a fresh gradient: autograd's alone
    y = _Check.apply(x)
    y.retain_grad()  # keeps a copy
    (y * 2).sum().backward()
    kept = []
    y = _Check.apply(x)
    y.register_hook(kept.append)  # a hook keeps the gradient itself
    (y * 2).sum().backward()
    mine = torch.ones(3, 4)
    _Check.apply(x).backward(mine)  # the caller's tensor
    _Check.apply(x).flatten().sum().backward()  # a view (of the expanded ones)
    assert _Check.seen == [True, True, False, False, False]


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = bs.create_model("bntt_digits", num_steps=4)
    mark_spike_inputs(model.features, 1.0)
    x = torch.randint(-1, 2, (4, 16, 1, 8, 8)).float()
    return model, x


@pytest.mark.parametrize("kernels", ["eager", "c"])
def test_the_in_place_backward_gives_the_same_gradients_and_leaves_the_callers_tensor(monkeypatch, kernels):
    """Blocks whose spikes' gradient is kept by a hook (no overwrite) against the same blocks without (overwrite):
    every parameter's gradient bit for bit; a gradient given to ``backward()`` is left as it was."""
    fused_block = sys.modules["bntt_snntorch.kernels.fused_block"]  # the module (the package exports its function)
    monkeypatch.setenv("BNTT_KERNELS", kernels)
    decisions = []
    monkeypatch.setattr(
        fused_block, "overwritable", lambda *args: decisions.append(overwritable(*args)) or decisions[-1]
    )
    model, x = _model_and_batch()
    kept = copy.deepcopy(model)
    held = []  # every block's spikes' gradient, held by a hook: none may be overwritten

    def hold(module, args, y):
        y.register_hook(held.append)

    hooks = [b.register_forward_hook(hold) for b in kept.features if isinstance(b, SpikingBlock)]
    g = torch.randn(4, 16, 10)
    g_before = g.clone()
    for net in (model, kept):
        (net(x) * g).sum().backward()
        decisions.append(None)
    assert decisions == [True] * 5 + [None] + [False] * 5 + [None]  # every block of the plain model overwrote
    for (name, a), b in zip(model.named_parameters(), kept.parameters()):
        assert torch.equal(a.grad, b.grad), name
    assert len(held) == len(hooks) == 5
    for h in hooks:
        h.remove()
    spikes = model.features[0](x)
    mine = torch.randn_like(spikes)
    before = mine.clone()
    spikes.backward(mine)
    assert torch.equal(mine, before) and torch.equal(g, g_before)


def test_the_synapse_backward_in_chunks_equals_one_call(monkeypatch):
    """Chunks of 3 samples against the whole batch at once: both gradients within float rounding (the convolution's
    kernels may sum in another order for another batch size)."""
    torch.manual_seed(1)
    synapse = torch.nn.Conv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randint(-1, 2, (10, 4, 7, 7)).float().requires_grad_()
    grads, calls = [], []
    one_call = spike_synapse.synapse_backward
    monkeypatch.setattr(
        spike_synapse, "synapse_backward", lambda grad, *a: calls.append(len(grad)) or one_call(grad, *a)
    )
    for chunk_bytes in (None, 3 * 4 * 7 * 7 * 4):
        if chunk_bytes:
            monkeypatch.setattr(spike_synapse, "BACKWARD_CHUNK_BYTES", chunk_bytes)
        x.grad = synapse.weight.grad = None
        y = spike_synapse.spike_synapse(synapse, x, 1.0)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append((x.grad.clone(), synapse.weight.grad.clone()))
    assert calls == [10, 3, 3, 3, 1]  # the whole batch at once, then chunks of 3 samples
    assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-4)
    assert_close(grads[1][1], grads[0][1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kernels", ["eager", "c"])
def test_memory_low_keeps_less_and_gives_the_default_modes_values_and_gradients_bit_for_bit(monkeypatch, kernels):
    """set_memory(model, "low"): every fused node keeps the synapse's input only (no float32 tensor as large as a
    synapse's output saved), recomputes the output in backward, and the spikes, readout and every gradient equal
    the default mode's bit for bit; explain says what each layer keeps."""
    from bntt_snntorch.kernels import explain

    monkeypatch.setenv("BNTT_KERNELS", kernels)
    model, x = _model_and_batch()
    low = bs.set_memory(copy.deepcopy(model), "low")
    g = torch.randn(4, 16, 10)
    saved = {}
    for name, net in (("default", model), ("low", low)):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, sizes=sizes: sizes.append(t.numel() * t.element_size()) or t, lambda t: t
        ):
            y = net(x)
        saved[name] = sum(sizes)
        (y * g).sum().backward()
        saved[name + "-y"] = y.detach()
    assert torch.equal(saved["default-y"], saved["low-y"])
    for (name, a), b in zip(model.named_parameters(), low.parameters()):
        assert torch.equal(a.grad, b.grad), name
    assert saved["low"] < 0.5 * saved["default"], saved
    lines = explain(low, x)
    blocks = [line for line in lines if line.path.startswith("bntt-")]
    assert len(blocks) == 5 and all("memory low: keeps the synapse's input" in line.reason for line in blocks)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append((t.dtype, t.numel())) or t, lambda t: t):
        low(x)
    codes = [n for dtype, n in kept if dtype == torch.uint8]  # bit planes: x (2 bits), 4 blocks' spikes (1 or 3)
    assert len(codes) == 5 and codes[0] == 2 * x[0].numel() * 4 // 8 and torch.int8 not in [d for d, _ in kept]


def test_memory_low_says_where_it_does_not_apply_and_refuses_an_unknown_mode():
    from bntt_snntorch.kernels import explain

    x = torch.rand(4, 2, 1, 8, 8)
    tab = bs.set_memory(bs.create_model("bntt_digits", num_steps=4, norm="tab"), "low")
    assert "memory low not applied: TAB's node keeps the synapse's output" in explain(tab, x)[0].reason
    bn = bs.set_memory(bs.create_model("bntt_digits", num_steps=4, norm="bn"), "low")
    assert "memory low not applied: the block is not one fused node" in explain(bn, x)[0].reason
    with pytest.raises(ValueError, match="memory mode must be one of default, low, got 'tiny'"):
        bs.set_memory(bn, "tiny")


def test_train_with_memory_low_ends_where_the_default_mode_does(tmp_path):
    """A short run of the default recipe with --memory low: the same metrics, epoch for epoch, as without."""
    from bntt_snntorch.training import TrainConfig, train

    results = []
    for memory in ("default", "low"):
        cfg = TrainConfig.from_recipe(None, num_epochs=2, max_batches=3, progress=False, memory=memory,
                                      output_dir=str(tmp_path / memory))  # fmt: skip
        results.append(train(cfg))
    rows = [(r.output_dir / "metrics.csv").read_text().splitlines() for r in results]
    columns = rows[0][0].split(",")
    keep = [i for i, c in enumerate(columns) if "loss" in c or "acc" in c]
    assert len(keep) >= 3
    for a, b in zip(rows[0][1:], rows[1][1:]):
        assert [a.split(",")[i] for i in keep] == [b.split(",")[i] for i in keep]
    assert '"memory": "low"' in (results[1].output_dir / "config.json").read_text()
