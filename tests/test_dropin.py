"""Drop-in use from snnTorch code: the BNTT step counter, per-net reset, ThroughTime (issue 11)."""

import copy
import io

import pytest
import snntorch as snn
import torch
from torch import nn

import bntt_snntorch as bn
from bntt_snntorch.utils import reset

from .helpers import assert_close


def test_counter_advances_wraps_and_resets():
    layer = bn.BatchNormTT2d(3, 3).eval()
    with torch.no_grad():
        for t in range(3):
            layer[t].weight.fill_(t + 1.0)
    x = torch.randn(2, 3, 4, 4)
    scales = []
    for _ in range(7):
        scales.append(round((layer(x) / layer[0](x)).mean().item()))
    assert scales == [1, 2, 3, 1, 2, 3, 1]
    assert layer.current_step == 1
    layer.reset()
    assert layer.current_step == 0


def test_explicit_and_multistep_forms_leave_counter_alone():
    layer = bn.BatchNormTT1d(4, 3)
    layer(torch.randn(5, 4))
    layer(torch.randn(5, 4), 2)
    layer[0](torch.randn(5, 4))
    layer.multi_step(torch.randn(3, 5, 4))
    assert layer.current_step == 1


def test_counter_under_eval_and_after_an_error():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), bn.BatchNormTT2d(2, 4)).eval()
    with torch.no_grad():
        net(torch.randn(1, 1, 4, 4))
        assert net[1].current_step == 1  # eval mode advances the counter too
        with pytest.raises(ValueError):
            net[1](torch.randn(1, 5, 4, 4))  # wrong channels: raises and does not advance
        assert net[1].current_step == 1
        net(torch.randn(1, 1, 4, 4))
        with pytest.raises(RuntimeError):
            nn.Sequential(net, nn.Linear(3, 3))(torch.randn(1, 1, 4, 4))  # fails after the BNTT step
    assert net[1].current_step == 3
    reset(net)
    assert net[1].current_step == 0


def test_counter_is_not_saved():
    net = nn.Sequential(nn.Linear(3, 4), bn.BatchNormTT1d(4, 5))
    net(torch.randn(2, 3)), net(torch.randn(2, 3))
    assert net[1].current_step == 2
    assert not any("counter" in k or "step" in k for k in net.state_dict())
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded[1].current_step == 0 and net[1].current_step == 2
    fresh = nn.Sequential(nn.Linear(3, 4), bn.BatchNormTT1d(4, 5))
    fresh.load_state_dict(net.state_dict())
    assert fresh[1].current_step == 0


class Issue354Net(nn.Module):
    """snnTorch issue #354's network, verbatim except for the BNTT class."""

    def __init__(self, bntt_cls):
        super().__init__()
        self.beta1 = torch.ones(64, 44, 44) * 0.7
        self.conv = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3))
        self.bntt = bntt_cls(64, time_steps=30)
        self.lif1 = snn.Leaky(beta=self.beta1, learn_beta=True)

    def forward(self, x):
        mem = self.lif1.init_leaky()
        spk_rec = []
        mem_rec = []
        for step in range(x.shape[0]):
            cur1 = self.conv(x[step])
            cur1 = self.bntt(cur1)
            spk1, mem = self.lif1(cur1, mem)
            spk_rec.append(spk1)
            mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def test_issue_354_example_runs_and_equals_explicit_steps():
    model = Issue354Net(bn.BatchNormTT2d)
    inp = torch.rand(30, 8, 1, 88, 88)  # the issue uses batch 32; 8 keeps the test quick
    with torch.no_grad():
        _, mem_rec = model.forward(inp)
        mem, explicit = model.lif1.init_leaky(), []
        for t in range(30):
            _, mem = model.lif1(model.bntt[t](model.conv(inp[t])), mem)
            explicit.append(mem)
    assert mem_rec.shape == (30, 8, 64, 44, 44)
    assert_close(mem_rec, torch.stack(explicit))
    assert model.bntt.current_step == 0  # exactly 30 steps: wrapped, no reset needed


def _sequential(T):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        bn.BatchNormTT2d(4, T),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Sequential(  # nested: snntorch.utils.reset misses neurons in here
            nn.Conv2d(4, 8, 3, padding=1, bias=False),
            bn.BatchNormTT2d(8, T),
            snn.Leaky(beta=0.8, init_hidden=True),
        ),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16, bias=False),
        bn.BatchNormTT1d(16, T),
        snn.Leaky(beta=0.85, init_hidden=True, output=True),
    )


def _run_counter(net, x_seq):
    return torch.stack([net(x)[1] for x in x_seq])  # output=True: (spk, mem)


def _run_explicit(net, x_seq):
    out = []
    for t, x in enumerate(x_seq):
        for layer in _flat(net):
            x = layer(x, t) if isinstance(layer, bn.ThroughTime) else layer(x)
        out.append(x[1])
    return torch.stack(out)


def _flat(module):
    for child in module.children():
        if isinstance(child, nn.Sequential):
            yield from _flat(child)
        else:
            yield child


def test_sequential_net_with_reset_equals_explicit_steps():
    T = 5
    net = _sequential(T)
    twin = copy.deepcopy(net)
    batches = [torch.rand(T, 3, 1, 8, 8) * 2 for _ in range(2)]
    for x_seq in batches:
        reset(net), reset(twin)
        a, b = _run_counter(net, x_seq), _run_explicit(twin, x_seq)
        assert_close(a, b, msg="membranes")
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    for (name, p), q in zip(net.named_parameters(), twin.parameters()):
        assert_close(p.grad, q.grad, msg=f"grad {name}")


def test_reset_covers_nested_neurons_and_spares_other_nets():
    net, other = _sequential(3), _sequential(3)
    x = torch.rand(2, 1, 8, 8) * 3
    net(x), other(x)
    nested = net[4][2]
    assert nested.mem.abs().sum() > 0 and other[2].mem.abs().sum() > 0
    reset(net)
    assert nested.mem.abs().sum() == 0 and net[2].mem.abs().sum() == 0
    assert net[1].current_step == 0 and net[4][1].current_step == 0
    assert other[2].mem.abs().sum() > 0, "another network's neurons must keep their state"
    assert other[1].current_step == 1


def test_through_time_batchnorm_with_bias():
    T = 4
    tt = bn.ThroughTime(lambda: nn.BatchNorm2d(6), T)
    with torch.no_grad():
        for m in tt:
            m.bias.normal_()
    twin = copy.deepcopy(tt)
    x = torch.randn(T, 3, 6, 5, 5)
    y_seq = tt.multi_step(x)
    y_steps = torch.stack([twin(x[t]) for t in range(T)])  # counter form
    assert_close(y_seq, y_steps)
    assert twin.current_step == 0
    assert all(m.bias is not None for m in tt)
    assert_close(y_seq[2].mean(dim=(0, 2, 3)), tt[2].bias.detach(), atol=1e-5)


def test_through_time_layernorm():
    T = 3
    tt = bn.ThroughTime(lambda: nn.LayerNorm(128), T)
    with torch.no_grad():
        for t, m in enumerate(tt):
            m.weight.fill_(t + 1)
    x = torch.randn(T, 2, 128)
    y = tt.multi_step(x)
    assert y.shape == x.shape
    for t in range(T):
        assert_close(y[t], tt[t](x[t]))
        assert_close(tt(x[t]), y[t])  # counter form
    with pytest.raises(ValueError, match="time_steps=3"):
        tt.multi_step(torch.randn(4, 2, 128))


def _snntorch_runtime_writes(neuron) -> set[str]:
    """Every attribute snnTorch's SpikingNeuron code writes on ``neuron`` at run time: run it per step in
    both calling styles, through its reset helpers, and collect the names that appear."""
    before = set(neuron.__dict__) | set(neuron._buffers) | set(neuron._parameters)
    x = torch.rand(2, 3)
    neuron.init_leaky()
    neuron.reset_mem()
    for _ in range(3):
        snn.Leaky.forward(neuron, x, neuron.mem) if not neuron.init_hidden else snn.Leaky.forward(neuron, x)
    type(neuron).reset_hidden()
    type(neuron).detach_hidden()
    after = set(neuron.__dict__) | set(neuron._buffers) | set(neuron._parameters)
    return after - before | {"mem", "reset", "state_function", "spike_grad", "reset_delay"}


@pytest.mark.parametrize("init_hidden", [False, True])
def test_nothing_snntorch_writes_at_run_time_shadows_ours(init_hidden):
    """Root of the old `'Tensor' object is not callable`: snn.Leaky.forward assigns self.reset, self.mem,
    ...; no name it writes may be a method or property of one of our classes."""
    written = _snntorch_runtime_writes(bn.Leaky(0.9, init_hidden=init_hidden))
    ours = [cls for cls in type(bn.Leaky(0.9)).__mro__ if cls.__module__.startswith("bntt_snntorch")]
    clashes = {name: cls.__name__ for cls in ours for name in written if name in vars(cls)}
    assert not clashes


@pytest.mark.parametrize("helper", ["ours", "snntorch"])
def test_reset_helpers_work_on_every_mix_over_several_batches(helper):
    """Our Leaky, snnTorch's Leaky and BNTT in one Sequential, init_hidden=True, 4 batches of 3 of the
    5 BNTT steps: each batch starts at BNTT step 0 with zero membranes (equal outputs every batch)."""
    import snntorch.utils

    net = nn.Sequential(
        nn.Linear(4, 6), bn.BatchNormTT1d(6, 5), bn.Leaky(0.8, init_hidden=True),
        nn.Linear(6, 3), bn.BatchNormTT1d(3, 5), snn.Leaky(0.8, init_hidden=True, output=True),
    ).eval()  # fmt: skip
    with torch.no_grad():
        for t in range(5):
            net[1][t].weight.fill_(1.0 + t)
    do_reset = reset if helper == "ours" else snntorch.utils.reset
    x = torch.rand(2, 4)
    outputs = []
    for _ in range(4):
        do_reset(net)
        outputs.append(torch.stack([net(x)[1] for _ in range(3)]))
        assert net[1].current_step == 3
    for out in outputs[1:]:
        assert torch.equal(out, outputs[0])


def test_snntorch_reset_on_snntorch_neurons_only_is_defined(monkeypatch):
    """With only snnTorch's own neurons (and none of ours in the process: snnTorch's helper resets every
    neuron it ever built, ours included, and ours signal a new sequence), snnTorch's helper cannot
    reach BNTT: a loop of exactly time_steps steps stays aligned (the counter wraps), a shorter one
    continues the count, and ours starts it at 0 again; a batch of another size in the middle of a
    sequence raises."""
    import snntorch.utils

    monkeypatch.setattr(snn.SpikingNeuron, "instances", [])  # snnTorch's SpikingNeuron.init(), undone after
    net = nn.Sequential(nn.Linear(3, 4), bn.BatchNormTT1d(4, 4), snn.Leaky(0.9, init_hidden=True)).eval()
    x = torch.rand(2, 3)
    for _ in range(4):
        net(x)
    snntorch.utils.reset(net)
    assert net[1].current_step == 0  # wrapped
    net(x), net(x)
    snntorch.utils.reset(net)
    assert net[1].current_step == 2  # snnTorch's helper knows no BNTT (documented in utils.reset)
    with pytest.raises(ValueError, match="step 2 of a sequence got a batch of 5, the previous step 2.*reset"):
        net(torch.rand(5, 3))
    reset(net)
    assert net[1].current_step == 0
    net(torch.rand(5, 3))


def test_lif_reset_attribute_is_snntorchs_and_reset_mem_restarts_counters():
    lif, ref = bn.Leaky(0.9), snn.Leaky(0.9)
    x = torch.rand(2, 3) + 1
    for neuron in (lif, ref):
        mem = neuron.init_leaky()
        for _ in range(2):
            _, mem = neuron(x, mem)
    assert torch.equal(lif.reset, ref.reset)  # the reset tensor of the last step, as in snnTorch
    norm = bn.BatchNormTT1d(3, 4).eval()
    norm(x), norm(x)
    lif.reset_mem()
    assert norm.current_step == 0
