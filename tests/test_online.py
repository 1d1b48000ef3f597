"""Online training (training/online.py): SLTT's gradients equal a hand-written reference with the temporal
path detached; OTTT's weight gradients equal the paper's trace formula; with T=1 the three modes agree;
BNTT's running statistics move once per step; the bytes held for backward over a whole training step
do not grow with T. Tolerances (float64): 1e-10."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bntt_snntorch as bn
from bntt_snntorch import TrainConfig, train
from bntt_snntorch.kernels.local_scan import local_leaky_scan
from bntt_snntorch.layers import SpikingBlock, TimeDistributed, mark_spike_inputs
from bntt_snntorch.models import SpikingNet
from bntt_snntorch.profiling import LiveSavedTensors
from bntt_snntorch.training import ConfigError
from bntt_snntorch.training.online import online_backward

from .helpers import VARIANTS, assert_close


def _net(T, norm=True, seed=0):
    """Linear 6 -> 5 (BNTT) -> seed neuron -> Linear 5 -> 4 (BNTT) -> seed neuron -> readout 3, float64."""
    torch.manual_seed(seed)
    blocks = []
    for n_in, n_out in ((6, 5), (5, 4)):
        norm_layer = bn.BatchNormTT1d(n_out, T) if norm else None
        blocks.append(SpikingBlock(nn.Linear(n_in, n_out, bias=False), norm_layer, bn.bntt_leaky(0.8, 0.5)))
    net = SpikingNet([TimeDistributed(nn.Identity()), *blocks], nn.Linear(4, 3, bias=False), T, 6)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -1.0, 1.5)
    return net.double()


def _data(T, seed=1, batch=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, batch, 6, generator=g, dtype=torch.float64) * 2, torch.randint(0, 3, (batch,), generator=g)


def _grads(net):
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _hand_written_sltt(net, x, y):
    """The per-step loss CE(readout_t, y) / T, each block's membrane from step t-1 detached, one backward."""
    blocks = [m for m in net.features if isinstance(m, SpikingBlock)]
    mems, total = [None] * len(blocks), 0
    for t, x_t in enumerate(x):
        h = x_t
        for i, block in enumerate(blocks):
            cur = block.norm.step(block.synapse(h), t) if block.norm is not None else block.synapse(h)
            h, mems[i] = block.neuron.step(cur, None if mems[i] is None else mems[i].detach())
        total = total + F.cross_entropy(net.classifier(h), y) / len(x)
    total.backward()
    return total


def test_sltt_gradients_equal_the_hand_written_rule_with_the_temporal_path_detached():
    T = 4
    net, ref = _net(T), _net(T)
    x, y = _data(T)
    loss, logits = online_backward(net, x, y, "sltt")
    ref_loss = _hand_written_sltt(ref, x, y)
    assert_close(loss, ref_loss.detach(), atol=1e-10, rtol=1e-10)
    for name, g in _grads(ref).items():
        assert_close(_grads(net)[name], g, atol=1e-10, rtol=1e-10, msg=name)
    bptt = _net(T)
    F.cross_entropy(bptt(x), y).backward()  # BPTT differs: the temporal path is there
    assert any((_grads(bptt)[n] - g).abs().max() > 1e-6 for n, g in _grads(ref).items())
    assert logits.shape == (7, 3) and net.step_mode == "m"  # restored after the online batch


def test_ottt_weight_gradients_equal_the_trace_formula():
    """Without normalisation: dL/dW2 = sum_t g_t^T a_t, a_t = beta a_(t-1) + s1_t (the presynaptic trace), g_t
    the step's gradient at the synapse's output with the temporal path detached; the first synapse (fed by
    the data) takes the data itself."""
    T = 5
    net, ref = _net(T, norm=False), _net(T, norm=False)
    x, y = _data(T)
    mark_spike_inputs(net.features)  # records each block's presynaptic neuron
    online_backward(net, x, y, "ottt")
    blocks = [m for m in ref.features if isinstance(m, SpikingBlock)]
    beta = blocks[0].neuron.beta.clamp(0, 1)
    trace, mems = None, [None, None]
    expected = [torch.zeros_like(b.synapse.weight) for b in blocks]
    for x_t in x:
        cur1 = blocks[0].synapse(x_t)
        s1, mems[0] = blocks[0].neuron.step(cur1, None if mems[0] is None else mems[0].detach())
        trace = s1.detach() if trace is None else beta * trace + s1.detach()
        cur2 = blocks[1].synapse(s1)
        s2, mems[1] = blocks[1].neuron.step(cur2, None if mems[1] is None else mems[1].detach())
        g1, g2 = torch.autograd.grad(F.cross_entropy(ref.classifier(s2), y) / T, (cur1, cur2))
        expected[0] += g1.T @ x_t
        expected[1] += g2.T @ trace
    got = _grads(net)
    assert_close(got["features.1.synapse.weight"], expected[0], atol=1e-10, rtol=1e-10, msg="first synapse")
    assert_close(got["features.2.synapse.weight"], expected[1], atol=1e-10, rtol=1e-10, msg="trace rule")
    sltt = _net(T, norm=False)
    online_backward(sltt, x, y, "sltt")
    assert (sltt.features[2].synapse.weight.grad - expected[1]).abs().max() > 1e-6  # the trace makes a difference


@pytest.mark.parametrize("norm", [True, False])
def test_with_one_step_the_three_modes_give_the_same_gradients(norm):
    x, y = _data(1)
    grads = {}
    for mode in ("bptt", "sltt", "ottt"):
        net = _net(1, norm=norm)
        mark_spike_inputs(net.features)
        if mode == "bptt":
            F.cross_entropy(net(x), y).backward()
        else:
            online_backward(net, x, y, mode)
        grads[mode] = _grads(net)
    for mode in ("sltt", "ottt"):
        for name, g in grads["bptt"].items():
            assert_close(grads[mode][name], g, atol=1e-10, rtol=1e-10, msg=f"{mode} {name}")


@pytest.mark.parametrize("mode", ["sltt", "ottt"])
def test_running_statistics_move_once_per_step(mode):
    T = 3
    net = _net(T)
    mark_spike_inputs(net.features)
    reference = copy.deepcopy(net)
    x, y = _data(T)
    online_backward(net, x, y, mode)
    with torch.no_grad():
        reference.forward_per_step(x)  # the per-step reference: each step's batch norm once
    for (name, a), b in zip(net.named_buffers(), reference.buffers()):
        assert_close(a, b, atol=1e-12, rtol=1e-12, msg=name)
    assert all(int(m.num_batches_tracked) == 1 for m in net.modules() if isinstance(m, nn.BatchNorm1d))


def _peak_saved(mode: str, T: int) -> int:
    torch.manual_seed(0)
    model = bn.create_model("bntt_digits", num_steps=T)
    mark_spike_inputs(model.features, 1.0)
    x = (torch.rand(T, 8, 1, 8, 8) < 0.3).float()
    y = torch.randint(0, 10, (8,))
    with LiveSavedTensors() as live:
        if mode == "bptt":
            F.cross_entropy(model(x), y).backward()
        else:
            online_backward(model, x, y, mode)
    assert live.live == 0  # everything freed at the end of the step
    return live.peak


def test_bytes_held_for_backward_over_a_whole_step_do_not_grow_with_T():
    """From T=8 (two chunks of steps or more for both rules, so that a membrane is carried between chunks in both
    runs: a first chunk starts from zeros and keeps none) to T=16, within 10 %; BPTT's grow with T."""
    for mode in ("sltt", "ottt"):
        short, long = _peak_saved(mode, 8), _peak_saved(mode, 16)
        assert abs(long / short - 1) <= 0.1, (mode, short, long)
    assert _peak_saved("bptt", 16) > 3 * _peak_saved("bptt", 4)


def test_online_needs_a_norm_with_per_step_statistics_and_a_spiking_net():
    with pytest.raises(ConfigError, match=r"--norm tebn normalises with the statistics of all steps.*bntt, none"):
        TrainConfig.from_recipe("digits", training="ottt", norm="tebn")
    with pytest.raises(ConfigError, match="--sltt-k must be in"):
        TrainConfig.from_recipe("digits", training="sltt", sltt_k=11)
    with pytest.raises(ConfigError, match="--sltt-k is SLTT-K"):
        TrainConfig.from_recipe("digits", sltt_k=2)
    with pytest.raises(ConfigError, match="trains spiking nets step by step"):
        TrainConfig.from_recipe("bsnn-digits-fp", training="sltt")


@pytest.mark.parametrize("mode,k", [("sltt", None), ("sltt", 2), ("ottt", None)])
def test_online_modes_train_through_train_and_record_the_mode(tmp_path, mode, k):
    cfg = TrainConfig.from_recipe(
        "digits", training=mode, sltt_k=k, num_epochs=1, max_batches=2, num_steps=4, output_dir=str(tmp_path / "r"),
        progress=False,
    )  # fmt: skip
    result = train(cfg)
    assert 0 <= result.test_acc <= 1 and result.rows[0]["train_loss"] > 0
    saved = torch.load(tmp_path / "r" / "last.pt", weights_only=False)["config"]
    assert (saved["training"], saved["sltt_k"]) == (mode, k)
    with pytest.raises(ConfigError, match="training="):
        train(TrainConfig.from_recipe("digits", num_epochs=1, max_batches=2, num_steps=4, progress=False,
                                      output_dir=str(tmp_path / "r"), resume="auto"))  # fmt: skip


def _peak_saved_with_input(mode: str, T: int, per_step: bool) -> int:
    """Peak bytes held for backward over one online step of the digits net, Poisson input encoded all at
    once (a (T, B, ...) sequence whose steps are views) or step by step (encode_steps)."""
    torch.manual_seed(0)
    model = bn.create_model("bntt_digits", num_steps=T)
    images, y = torch.rand(8, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (8,))
    encoder = bn.encoding.SequenceEncoder(T, "p", torch.Generator().manual_seed(1))
    with LiveSavedTensors() as live:
        if per_step:
            online_backward(model, encoder.steps(images), y, mode, num_steps=T)
        else:
            online_backward(model, encoder(images), y, mode)
    return live.peak


@pytest.mark.parametrize("mode", ["sltt", "ottt"])
def test_input_encoded_step_by_step_keeps_the_saved_bytes_flat_in_T(mode):
    """With the input counted: encoded step by step, nothing saved grows from T=8 to T=64 (within 10 %; both carry
    a membrane between chunks); encoded all at once, the same: the rules run CHUNK_STEPS steps a call from a
    stacked copy of them, so no saved tensor is a view that keeps the whole sequence."""
    short, long = _peak_saved_with_input(mode, 8, True), _peak_saved_with_input(mode, 64, True)
    assert long / short <= 1.1, (short, long)
    assert _peak_saved_with_input(mode, 64, False) == long


def test_encode_steps_are_encodes_steps_made_one_at_a_time():
    images = torch.rand(5, 3, 4, 4) * 2 - 1
    for method in ("p", "d"):
        whole = bn.encoding.encode(images, 6, method, torch.Generator().manual_seed(2))
        steps = list(bn.encoding.encode_steps(images, 6, method, torch.Generator().manual_seed(2)))
        assert len(steps) == 6 and torch.equal(torch.stack(steps), whole)  # the same Poisson draws on CPU
    assert all(s._base is None for s in bn.encoding.encode_steps(images, 3, "p"))  # no view of a sequence
    frames = torch.randint(0, 3, (2, 4, 2, 5, 5), dtype=torch.int16)
    assert torch.equal(
        torch.stack(list(bn.encoding.encode_steps(frames, 4, "events"))), bn.encoding.encode(frames, 4, "events")
    )
    with pytest.raises(ValueError, match="with time steps"):
        next(bn.encoding.encode_steps(images, 3, "none"))


@pytest.mark.parametrize("mode", ["sltt", "ottt"])
def test_online_training_from_steps_equals_training_from_the_sequence(mode):
    images, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (6,))
    grads = []
    for per_step in (False, True):
        torch.manual_seed(0)
        model = bn.create_model("bntt_digits", num_steps=5)
        encoder = bn.encoding.SequenceEncoder(5, "p", torch.Generator().manual_seed(4))
        steps = encoder.steps(images) if per_step else encoder(images)
        loss, logits = online_backward(model, steps, y, mode, num_steps=5 if per_step else None)
        grads.append([loss, logits] + [p.grad for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        assert_close(a, b, atol=0, rtol=0)  # the same draws, the same arithmetic: equal


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_the_local_scan_equals_per_step_neurons_with_the_membrane_detached(variant):
    """kernels.local_scan against MultiStepLeaky.step looped with the membrane from the step before
    detached (what SLTT's per-step path runs): spikes, last membrane and input gradient, float64, 1e-12;
    from a given membrane, graded spikes 1.5, fresh random input."""
    lif = bn.MultiStepLeaky(0.8, threshold=0.7, graded_spikes_factor=1.5, **variant.leaky_kwargs()).double()
    g = torch.Generator().manual_seed(3)
    cur = (torch.randn(5, 4, 6, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    mem0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 4, 6, generator=g, dtype=torch.float64)
    spikes, mem = local_leaky_scan(cur, lif.params(), mem0)
    (spikes * weight).sum().backward()
    ref_cur, ref, m = cur.detach().clone().requires_grad_(), [], mem0
    for x in ref_cur:
        spk, m = lif.step(x, m.detach())
        ref.append(spk)
    (torch.stack(ref) * weight).sum().backward()
    assert spikes.sum() > 0
    assert_close(spikes, torch.stack(ref), atol=1e-12, rtol=0)
    assert_close(mem, m.detach(), atol=1e-12, rtol=0)
    assert_close(cur.grad, ref_cur.grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "rule, kernels",
    [
        ("sltt", "eager"),
        ("ottt", "eager"),
        ("sltt", "c"),
        ("ottt", "c"),
    ],
)
def test_several_steps_a_call_equal_one_step_a_call_on_the_digits_net(monkeypatch, rule, kernels):
    """Several steps a call (T=6: SLTT 4 + 2, OTTT 2 + 2 + 2; the state and OTTT's traces carried over)
    against one step a call, on the conv digits net (BNTT 2d, pooling, spike inputs kept as int8 codes): loss, readout,
    every gradient and running statistic, float32 (1e-5 of the largest entry). ``kernels``: the fused node's
    steps eager, or its C loops (BNTT_KERNELS=c) without the carry through time."""
    from bntt_snntorch.kernels import c_bntt
    from bntt_snntorch.training import online

    monkeypatch.setenv("BNTT_KERNELS", kernels)
    used = []

    def counted(run):
        return lambda *args: used.append("c") or run(*args)

    for name in ("forward", "forward_with_statistics"):
        monkeypatch.setattr(c_bntt, name, counted(getattr(c_bntt, name)))
    T = 6
    chunked, per_step = bn.create_model("bntt_digits", num_steps=T), None
    per_step = copy.deepcopy(chunked)
    images = torch.rand(12, 1, 8, 8) * 2 - 1
    y = torch.randint(0, 10, (12,))
    x = bn.encoding.encode(images, T, "p", torch.Generator().manual_seed(4))
    assert online.runs_in_chunks(chunked, rule)
    loss, logits = online_backward(chunked, x, y, rule)
    assert ("c" in used) == (kernels == "c")
    monkeypatch.setattr(online, "runs_in_chunks", lambda net, rule: False)
    ref_loss, ref_logits = online_backward(per_step, x, y, rule)
    assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    assert_close(logits, ref_logits, atol=1e-5, rtol=0)
    ref_grads = _grads(per_step)
    assert _grads(chunked).keys() == ref_grads.keys() and len(ref_grads) > 10
    for name, g in ref_grads.items():
        scale = g.abs().max().clamp(min=1e-6)
        assert_close(_grads(chunked)[name] / scale, g / scale, atol=1e-5, rtol=0, msg=name)
    ref_buffers = dict(per_step.named_buffers())
    for name, b in chunked.named_buffers():
        assert_close(b.float(), ref_buffers[name].float(), atol=1e-5, rtol=1e-5, msg=name)
