"""snnTorch's own tutorial loops (docs/tutorials 5, 6 and 7) with our classes swapped in and a BNTT
layer after each synapse: several training batches, with either reset helper, give the same losses
as the same loop with snnTorch's ``snn.Leaky`` and ``snn.BatchNormTT*d`` indexed by step (fp32).

Random data of the tutorials' shapes: MNIST 28x28 (tutorials 5, 6), N-MNIST frames (T, B, 2, 34, 34)
(tutorial 7). Tolerance: the two loops run the same torch ops, so losses agree to 1e-6 relative.
"""

import copy

import pytest
import snntorch as snn
import snntorch.functional as SF
import snntorch.utils
import torch
from snntorch import spikegen
from snntorch import surrogate as snn_surrogate
from torch import nn

import bntt_snntorch as bn
import bntt_snntorch.utils
from bntt_snntorch.layers import SpikingBlock, TimeDistributed

from .helpers import assert_close

RESET_HELPERS = {"bntt_snntorch.utils.reset": bntt_snntorch.utils.reset, "snntorch.utils.reset": snntorch.utils.reset}
BATCHES = 3


def _train(net, forward, batches, lr=5e-4):
    """The tutorials' loop: Adam, forward, loss, backward, step; the loss of every batch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
    losses = []
    for data, targets in batches:
        loss = forward(net, data, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def _snntorch_twin(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with snnTorch's own classes: each of our Leaky layers -> ``snn.Leaky`` (same
    arguments), each BNTT -> ``snn.BatchNormTT*d`` (same state dict), run by step index."""
    twin = copy.deepcopy(net)
    for name, module in list(twin.named_modules()):
        if isinstance(module, bn.Leaky):
            replacement = snn.Leaky(
                module.beta.item(), spike_grad=module.spike_grad, init_hidden=module.init_hidden, output=module.output
            )
        elif isinstance(module, bn.BatchNormTT):
            make = snn.BatchNormTT2d if isinstance(module, bn.BatchNormTT2d) else snn.BatchNormTT1d
            replacement = make(module.num_features, module.time_steps, eps=module[0].eps)
            replacement.load_state_dict(module.state_dict())
        else:
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(twin.get_submodule(parent) if parent else twin, leaf, replacement)
    return twin


# -- tutorial 5: explicit membranes with init_leaky(), static or spikegen input, CE on the membrane --
class Tutorial5Net(nn.Module):
    """784 -> 1000 -> 10, ``mem = lif.init_leaky()`` in forward; BNTT after each Linear."""

    def __init__(self, num_steps, leaky=bn.Leaky, bntt=True):
        super().__init__()
        self.num_steps = num_steps
        self.fc1 = nn.Linear(784, 1000)
        self.bn1 = bn.BatchNormTT1d(1000, num_steps) if bntt else nn.Identity()
        self.lif1 = leaky(0.95)
        self.fc2 = nn.Linear(1000, 10)
        self.bn2 = bn.BatchNormTT1d(10, num_steps) if bntt else nn.Identity()
        self.lif2 = leaky(0.95)

    def forward(self, x, steps=None):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(steps or self.num_steps):
            cur1 = self._norm(self.bn1, self.fc1(x[step]), step)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self._norm(self.bn2, self.fc2(spk1), step)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)

    @staticmethod
    def _norm(norm, x, step):
        # ours: the step counter (the snnTorch-style call); snnTorch's BNTT is a ModuleList indexed by step
        return norm[step](x) if isinstance(norm, nn.ModuleList) and not isinstance(norm, bn.BatchNormTT) else norm(x)


def _tutorial5_forward(net, data, targets, steps=None):
    _, mem_rec = net(data, steps)
    loss = nn.CrossEntropyLoss()
    return sum(loss(mem_rec[step], targets) for step in range(mem_rec.shape[0]))


def _mnist_batches(num_steps, batch=16, spikes=True):
    out = []
    for _ in range(BATCHES):
        images = torch.rand(batch, 784)
        data = spikegen.rate(images, num_steps=num_steps) if spikes else images.expand(num_steps, -1, -1)
        out.append((data, torch.randint(0, 10, (batch,))))
    return out


@pytest.mark.parametrize("spikes", [True, False], ids=["spikegen.rate", "static"])
def test_tutorial5_loop_equals_snntorch(spikes):
    num_steps = 25
    ours = Tutorial5Net(num_steps)
    twin = _snntorch_twin(ours)
    batches = _mnist_batches(num_steps, spikes=spikes)
    a = _train(ours, _tutorial5_forward, batches)
    b = _train(twin, _tutorial5_forward, batches)
    assert torch.isfinite(a).all() and not torch.equal(a[0], a[-1])  # it trains
    assert_close(a, b, atol=0, rtol=1e-6)


def test_tutorial5_loop_shorter_than_the_bntt_steps_restarts_at_step_0():
    """init_leaky() in forward is the start of a sequence: a loop of 10 of the 25 BNTT steps uses
    steps 0..9 in every batch (the snnTorch twin indexes them), not 10..19 in the second."""
    ours = Tutorial5Net(25)
    twin = _snntorch_twin(ours)
    batches = _mnist_batches(25)

    def forward(net, data, targets):
        return _tutorial5_forward(net, data, targets, steps=10)

    assert_close(_train(ours, forward, batches), _train(twin, forward, batches), atol=0, rtol=1e-6)
    assert ours.bn1.current_step == 10


# -- tutorial 6: a convolutional SNN, explicit membranes, and nn.Sequential with init_hidden=True --
def _tutorial6_sequential(num_steps, leaky=bn.Leaky):
    spike_grad = snn_surrogate.fast_sigmoid(slope=25)
    return nn.Sequential(
        nn.Conv2d(1, 12, 5),
        bn.BatchNormTT2d(12, num_steps),
        nn.MaxPool2d(2),
        leaky(0.5, spike_grad=spike_grad, init_hidden=True),
        nn.Conv2d(12, 64, 5),
        bn.BatchNormTT2d(64, num_steps),
        nn.MaxPool2d(2),
        leaky(0.5, spike_grad=spike_grad, init_hidden=True),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 10),
        bn.BatchNormTT1d(10, num_steps),
        leaky(0.5, spike_grad=spike_grad, init_hidden=True, output=True),
    )


def _per_step_forward(reset, steps=None):
    """The tutorials' ``forward_pass``: reset, then ``spk, mem = net(data[step])`` for each step. On the
    snnTorch twin the BNTT ModuleLists are indexed by step."""

    def run(net, data):
        reset(net)
        spk_rec, mem_rec = [], []
        for step in range(steps or data.size(0)):
            x = data[step]
            for layer in net:
                if isinstance(layer, nn.ModuleList) and not isinstance(layer, bn.BatchNormTT):
                    x = layer[step](x)
                else:
                    x = layer(x)
            spk_out, mem_out = x
            spk_rec.append(spk_out)
            mem_rec.append(mem_out)
        return torch.stack(spk_rec), torch.stack(mem_rec)

    return run


@pytest.mark.parametrize("helper", RESET_HELPERS)
def test_tutorial6_sequential_with_either_reset_helper_equals_snntorch(helper):
    num_steps = 25
    ours = _tutorial6_sequential(num_steps)
    twin = _snntorch_twin(ours)
    run = _per_step_forward(RESET_HELPERS[helper])
    loss_fn = SF.ce_rate_loss()

    def forward(net, data, targets):
        spk_rec, _ = run(net, data)
        return loss_fn(spk_rec, targets)

    batches = [
        (torch.rand(8, 1, 28, 28).expand(num_steps, -1, -1, -1, -1), torch.randint(0, 10, (8,))) for _ in range(BATCHES)
    ]
    a = _train(ours, forward, batches, lr=1e-2)
    b = _train(twin, forward, batches, lr=1e-2)
    assert torch.isfinite(a).all()
    assert_close(a, b, atol=0, rtol=1e-6)
    with torch.no_grad():
        spk, _ = run(ours, batches[0][0])
        ref, _ = run(twin, batches[0][0])
    assert SF.accuracy_rate(spk, batches[0][1]) == SF.accuracy_rate(ref, batches[0][1])


class Tutorial6Net(nn.Module):
    """Tutorial 6's ``Net`` class: convolutions with explicit membranes from ``init_leaky()``."""

    def __init__(self, num_steps):
        super().__init__()
        spike_grad = snn_surrogate.fast_sigmoid(slope=25)
        self.conv1, self.bn1 = nn.Conv2d(1, 12, 5), bn.BatchNormTT2d(12, num_steps)
        self.lif1 = bn.Leaky(0.5, spike_grad=spike_grad)
        self.conv2, self.bn2 = nn.Conv2d(12, 64, 5), bn.BatchNormTT2d(64, num_steps)
        self.lif2 = bn.Leaky(0.5, spike_grad=spike_grad)
        self.fc1, self.bn3 = nn.Linear(64 * 4 * 4, 10), bn.BatchNormTT1d(10, num_steps)
        self.lif3 = bn.Leaky(0.5, spike_grad=spike_grad)

    def forward(self, data):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        spk_rec = []
        for step in range(data.size(0)):
            t = lambda norm, x: norm[step](x) if not isinstance(norm, bn.BatchNormTT) else norm(x)  # noqa: B023
            cur1 = nn.functional.max_pool2d(t(self.bn1, self.conv1(data[step])), 2)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = nn.functional.max_pool2d(t(self.bn2, self.conv2(spk1)), 2)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk3, mem3 = self.lif3(t(self.bn3, self.fc1(spk2.flatten(1))), mem3)
            spk_rec.append(spk3)
        return torch.stack(spk_rec)


def test_tutorial6_net_class_with_explicit_membranes_equals_snntorch():
    num_steps = 20
    ours = Tutorial6Net(num_steps)
    twin = _snntorch_twin(ours)
    loss_fn = SF.ce_rate_loss()
    batches = [(torch.rand(num_steps, 8, 1, 28, 28), torch.randint(0, 10, (8,))) for _ in range(BATCHES)]

    def forward(net, data, targets):
        return loss_fn(net(data), targets)

    assert_close(_train(ours, forward, batches, lr=1e-2), _train(twin, forward, batches, lr=1e-2), atol=0, rtol=1e-6)


# -- tutorial 7: N-MNIST frames through nn.Sequential, init_hidden=True, mse_count_loss --------------
def _tutorial7_sequential(num_steps, step_mode="s", spike_grad=None):
    """Tutorial 7's net (snnTorch's ATan surrogate unless ``spike_grad`` is given); stateless layers in
    TimeDistributed so that ``set_step_mode(net, "m")`` runs it too."""
    spike_grad = snn_surrogate.atan() if spike_grad is None else spike_grad
    lif = lambda **kw: bn.Leaky(0.5, spike_grad=spike_grad, init_hidden=True, step_mode=step_mode, **kw)
    over_time = lambda m: TimeDistributed(m, step_mode=step_mode)  # noqa: E731  the module itself per step
    return nn.Sequential(
        over_time(nn.Conv2d(2, 12, 5)),
        bn.BatchNormTT2d(12, num_steps, step_mode=step_mode),
        over_time(nn.MaxPool2d(2)),
        lif(),
        over_time(nn.Conv2d(12, 32, 5)),
        bn.BatchNormTT2d(32, num_steps, step_mode=step_mode),
        over_time(nn.MaxPool2d(2)),
        lif(),
        over_time(nn.Flatten()),
        over_time(nn.Linear(32 * 5 * 5, 10)),
        bn.BatchNormTT1d(10, num_steps, step_mode=step_mode),
        lif(output=True),
    )


def _nmnist_batches(num_steps, batch=4):
    return [
        ((torch.rand(num_steps, batch, 2, 34, 34) < 0.1).float(), torch.randint(0, 10, (batch,)))
        for _ in range(BATCHES)
    ]


@pytest.mark.parametrize("helper", RESET_HELPERS)
def test_tutorial7_sequential_with_either_reset_helper_equals_snntorch(helper):
    num_steps = 12
    ours = _tutorial7_sequential(num_steps)
    twin = _snntorch_twin(ours)
    run = _per_step_forward(RESET_HELPERS[helper])
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)

    def forward(net, data, targets):
        return loss_fn(run(net, data)[0], targets)

    batches = _nmnist_batches(num_steps)
    a = _train(ours, forward, batches, lr=2e-2)
    b = _train(twin, forward, batches, lr=2e-2)
    assert torch.isfinite(a).all()
    assert_close(a, b, atol=0, rtol=1e-6)


@pytest.mark.parametrize("helper", RESET_HELPERS)
def test_tutorial7_loop_in_step_mode_m_equals_the_per_step_loop(helper):
    """The same network of our step modules, ``set_step_mode(net, "m")``: one call a batch, the
    loss of every batch equal to the per-step loop's. In float64 (1e-9 relative): in fp32 the
    multi-step batch norm sums in another order, and after two Adam steps at the tutorial's learning
    rate a spike at the threshold can flip. With our ATan (snnTorch's formula; snnTorch's own returns
    float32 spikes for float64 input, so its float64 net cannot run), so the fused scan runs."""
    num_steps = 12
    per_step = _tutorial7_sequential(num_steps, spike_grad=bn.surrogate.atan())
    multi = _tutorial7_sequential(num_steps, spike_grad=bn.surrogate.atan())  # built, not deep-copied: snnTorch's
    # reset finds only the neurons that were built
    multi.load_state_dict(per_step.state_dict())
    bn.set_step_mode(multi.double(), "m")
    per_step.double()
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    run = _per_step_forward(RESET_HELPERS[helper])

    def forward_s(net, data, targets):
        return loss_fn(run(net, data)[0], targets)

    def forward_m(net, data, targets):
        RESET_HELPERS[helper](net)
        spk_rec, _ = net(data)
        return loss_fn(spk_rec, targets)

    batches = [(data.double(), targets) for data, targets in _nmnist_batches(num_steps)]
    assert_close(_train(multi, forward_m, batches, 2e-2), _train(per_step, forward_s, batches, 2e-2), atol=0, rtol=1e-9)


def test_tutorial5_in_step_mode_m_with_our_network():
    """Tutorial 5's MLP as one of our networks (Linear -> BNTT -> Leaky blocks) trained both ways
    (float64, 1e-9 relative, as above)."""
    num_steps = 10

    def build():
        return nn.Sequential(
            SpikingBlock(nn.Linear(784, 100), bn.BatchNormTT1d(100, num_steps), bn.Leaky(0.95)),
            SpikingBlock(nn.Linear(100, 10), bn.BatchNormTT1d(10, num_steps), bn.Leaky(0.95)),
        )

    per_step = bn.set_step_mode(build().double(), "s")
    multi = bn.set_step_mode(copy.deepcopy(per_step), "m")
    batches = [(data.double(), targets) for data, targets in _mnist_batches(num_steps)]
    loss_fn = SF.ce_rate_loss()

    def forward_s(net, data, targets):
        bntt_snntorch.utils.reset(net)
        return loss_fn(torch.stack([net(x) for x in data]), targets)

    def forward_m(net, data, targets):
        return loss_fn(net(data), targets)

    assert_close(_train(multi, forward_m, batches), _train(per_step, forward_s, batches), atol=0, rtol=1e-9)
