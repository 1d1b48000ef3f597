"""MPBN (a batch norm on the membrane) against the authors' update written out and SpikingJelly 2.0's
``MPBNLIFNode``; its threshold fold. Float64, fresh random inputs and norm parameters: spikes equal, the
input and norm-parameter gradients and running statistics within 1e-10 (the same operations in another
order where they differ at all)."""

import copy

import pytest
import torch
from torch import nn

import bntt_snntorch as bs
from bntt_snntorch.membrane_norm import FoldedMPBNLeaky, MPBNLeaky

from .helpers import assert_close

SHAPES = {2: (6, 8, 3, 5, 4), 1: (6, 8, 3)}  # (T, B, C, H, W) and (T, B, C)


def authors_update(x_seq, bn, beta, theta, spike_grad):
    """``mem_update`` of ``yfguo91/MPBN`` (``models/spike_layer.py``) looped over the steps: charge, the norm of
    the membrane, fire against ``theta``, the un-normalised membrane reset to zero."""
    mem, spikes = torch.zeros_like(x_seq[0]), []
    for x in x_seq:
        mem = mem * beta + x
        spike = spike_grad(bn(mem) - theta)
        mem = mem * (1 - spike)
        spikes.append(spike)
    return torch.stack(spikes)


def _randomise(bn: nn.modules.batchnorm._BatchNorm, seed: int, negative: bool = False) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = torch.rand(bn.num_features, generator=g, dtype=bn.weight.dtype) + 0.5
        if negative:
            weight[0] = -weight[0]
        bn.weight.copy_(weight)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g, dtype=bn.weight.dtype) * 0.3)


@pytest.mark.parametrize("dims", [2, 1])
@pytest.mark.parametrize("mode", ["m", "s"])
def test_mpbn_equals_the_authors_update(dims, mode):
    torch.manual_seed(dims)
    ours = MPBNLeaky(3, beta=0.25, threshold=0.5, spike_grad=bs.surrogate.atan()).double()
    reference = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(3).double()
    _randomise(ours.bn, 0)
    reference.load_state_dict(ours.bn.state_dict())
    x_seq = torch.randn(SHAPES[dims], dtype=torch.float64) + 0.3
    x_ours, x_ref = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
    if mode == "m":
        spikes, _ = ours.multi_step(x_ours)
    else:
        mem, out = None, []
        for x in x_ours:
            spk, mem = ours.step(x, mem)
            out.append(spk)
        spikes = torch.stack(out)
    expected = authors_update(x_ref, reference, 0.25, 0.5, bs.surrogate.atan())
    assert torch.equal(spikes, expected) and 0 < spikes.mean() < 1
    grad = torch.randn_like(spikes)
    (spikes * grad).sum().backward()
    (expected * grad).sum().backward()
    assert_close(x_ours.grad, x_ref.grad, atol=1e-10, rtol=1e-10)
    assert_close(ours.bn.weight.grad, reference.weight.grad, atol=1e-10, rtol=1e-10)
    assert_close(ours.bn.bias.grad, reference.bias.grad, atol=1e-10, rtol=1e-10)
    assert_close(ours.bn.running_mean, reference.running_mean, atol=1e-12, rtol=1e-12)  # updated at every step
    assert_close(ours.bn.running_var, reference.running_var, atol=1e-12, rtol=1e-12)
    assert int(ours.bn.num_batches_tracked) == SHAPES[dims][0]


@pytest.mark.parametrize("dims", [2, 1])
def test_the_normalised_carry_equals_spikingjellys_mpbn_lif_node(dims):
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")
    torch.manual_seed(dims + 2)
    size = {"out_channels": 3} if dims == 2 else {"out_features": 3}
    theirs = sj_neuron.MPBNLIFNode(tau=2.0, surrogate_function=sj_surrogate.Sigmoid(alpha=4.0), step_mode="m", **size)
    theirs = theirs.double()
    ours = MPBNLeaky(3, beta=0.5, threshold=1.0, spike_grad=bs.surrogate.sigmoid(4.0), carry="normalised").double()
    _randomise(ours.bn, 1)
    theirs.vbn.load_state_dict(ours.bn.state_dict())
    x_seq = torch.randn(SHAPES[dims], dtype=torch.float64) * 2 + 0.5
    x_ours, x_theirs = x_seq.clone().requires_grad_(), x_seq.clone().requires_grad_()
    spikes, _ = ours.multi_step(x_ours)
    expected = theirs(x_theirs)
    assert torch.equal(spikes, expected) and 0 < spikes.mean() < 1
    grad = torch.randn_like(spikes)
    (spikes * grad).sum().backward()
    (expected * grad).sum().backward()
    assert_close(x_ours.grad, x_theirs.grad, atol=1e-10, rtol=1e-10)
    assert_close(ours.bn.weight.grad, theirs.vbn.weight.grad, atol=1e-10, rtol=1e-10)
    assert_close(ours.bn.running_var, theirs.vbn.running_var, atol=1e-12, rtol=1e-12)


def _trained_mpbn_model(seed=0, dtype=torch.float64, norm="bntt"):
    torch.manual_seed(seed)
    model = bs.create_model("bntt_digits", num_steps=4, norm=norm, neuron="mpbn").to(dtype)
    x_seq = (torch.rand(4, 16, 1, 8, 8, dtype=dtype) < 0.3).to(dtype)
    with torch.no_grad():
        for _ in range(3):  # running statistics of a few batches
            model(x_seq)
    neurons = [m for m in model.modules() if isinstance(m, MPBNLeaky)]
    for k, neuron in enumerate(neurons):
        _randomise(neuron.bn, k, negative=k == 0)  # a negative weight: that channel fires below its threshold
    return model.eval(), x_seq


def test_fold_thresholds_gives_the_same_eval_outputs():
    model, x_seq = _trained_mpbn_model()
    folded = bs.fold_thresholds(model)
    assert not any(isinstance(m, MPBNLeaky) for m in folded.modules())
    assert any(isinstance(m, MPBNLeaky) for m in model.modules())  # the model itself is left as it was
    first = next(m for m in folded.modules() if isinstance(m, FoldedMPBNLeaky))
    assert first.signs[0] == -1 and (first.signs[1:] == 1).all()
    assert torch.equal(folded(x_seq), model(x_seq))  # float64: every spike the same
    model32, x32 = _trained_mpbn_model(dtype=torch.float32)
    assert_close(bs.fold_thresholds(model32)(x32), model32(x32), atol=1e-5, rtol=1e-5)


def test_fold_thresholds_refuses_a_zero_weight_and_the_normalised_carry_naming_the_layer():
    model, _ = _trained_mpbn_model()
    with torch.no_grad():
        model.features[3].neuron.bn.weight[1] = 0.0
    with pytest.raises(ValueError, match=r"features\.3\.neuron: the membrane norm's weight is 0 in channel\(s\) \[1\]"):
        bs.fold_thresholds(model)
    net = nn.Sequential(nn.Linear(4, 3), MPBNLeaky(3, carry="normalised"))
    with pytest.raises(ValueError, match="1: carry='normalised' carries the normalised membrane"):
        bs.fold_thresholds(net)


def test_mpbn_trains_through_train_py_and_explain_says_how_it_runs(tmp_path):
    from bntt_snntorch.commands.train import get_args_parser, main
    from bntt_snntorch.kernels import explain

    model = bs.create_model("vgg9", num_steps=2, neuron="mpbn")
    assert isinstance(model.features[0].neuron, MPBNLeaky) and model.features[0].neuron.bn.num_features == 64
    lines = explain(bs.create_model("bntt_digits", num_steps=2, neuron="mpbn"), torch.rand(2, 2, 1, 8, 8))
    assert "each step's batch statistics: eager steps, looped" in str(lines[0])
    with pytest.raises(ValueError, match="give its channel count"):
        bs.create_neuron("mpbn", 0.9)
    run = tmp_path / "run"
    flags = ["--neuron", "mpbn", "--num_epochs", "1", "--max-batches", "2", "--num_steps", "4", "--no-progress"]
    main(get_args_parser().parse_args([*flags, "--output-dir", str(run)]))
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["config"]["neuron"] == "mpbn" and "features.0.neuron.bn.running_var" in ckpt["model"]


@pytest.mark.slow
def test_compare_norms_takes_tab_and_mpbn(tmp_path):
    import csv
    import json

    from bntt_snntorch.commands import compare_norms

    argv = ["--norms", "tab", "mpbn", "--seeds", "1", "--num-epochs", "1", "--max-batches", "2"]
    assert compare_norms.run([*argv, "--output-dir", str(tmp_path), "--no-progress"]) == 0
    assert [r["norm"] for r in csv.DictReader(open(tmp_path / "comparison.csv"))] == ["tab", "mpbn"]
    text = (tmp_path / "comparison.md").read_text()
    assert "| TAB |" in text and "| MPBN (BN over T*B + membrane BN) |" in text
    config = json.loads((tmp_path / "mpbn-seed0" / "config.json").read_text())
    assert (config["norm"], config["neuron"]) == ("bn", "mpbn")


def test_the_folded_model_exports_to_nir_with_per_neuron_thresholds_and_reads_back_exactly(tmp_path):
    """MPBN as its authors built it (a BN over T*B after each synapse, which folds into the weights exactly; reset
    to zero): every node exact; each LIF's v_threshold is the folded threshold per neuron, the channel with a
    negative norm weight written negated on both sides (its synapse row and its threshold); read back from a real
    .nir file with our metadata the network is the folded model bit for bit, from NIR's values alone (another
    rounding of the folded synapses) at most 0.1 % of the spikes differ."""
    nir = pytest.importorskip("nir", reason="the nir extra: pip install -e '.[nir]'")
    from bntt_snntorch.layers import SpikingBlock
    from bntt_snntorch.nir_exchange import FidelityReport

    model, x_seq = _trained_mpbn_model(dtype=torch.float32, norm="bn")
    folded = bs.fold_thresholds(model)
    graph = bs.export_to_nir(folded, x_seq[0])
    assert FidelityReport.of(graph).exact, str(FidelityReport.of(graph))
    first = folded.features[0].neuron
    threshold = graph.nodes["features_0_neuron"].v_threshold
    expected = (first.signs * first.thresholds).view(-1, 1, 1).expand(threshold.shape)
    assert torch.equal(torch.as_tensor(threshold), expected) and len(torch.unique(expected)) > 1
    unsigned = copy.deepcopy(folded)
    unsigned.features[0].neuron.signs.fill_(1.0)
    weight, plain = (
        torch.as_tensor(g.nodes["features_0_synapse"].weight) for g in (graph, bs.export_to_nir(unsigned, x_seq[0]))
    )
    assert torch.equal(weight[0], -plain[0]) and torch.equal(weight[1:], plain[1:])  # channel 0: weight < 0

    path = tmp_path / "folded.nir"
    nir.write(str(path), graph)
    read = nir.read(str(path))

    def readout_and_spikes(net):
        spikes = []
        hooks = [
            b.register_forward_hook(lambda m, a, y: spikes.append(y))
            for b in net.modules()
            if isinstance(b, SpikingBlock)
        ]
        with torch.no_grad():
            out = net.classifier(net.features(x_seq)) if isinstance(net, bs.models.SpikingNet) else net(x_seq)
        for h in hooks:
            h.remove()
        return out, spikes

    reference, reference_spikes = readout_and_spikes(folded)
    out, spikes = readout_and_spikes(bs.import_from_nir(read))
    assert torch.equal(out, reference) and all(torch.equal(a, b) for a, b in zip(spikes, reference_spikes))
    _, spikes = readout_and_spikes(bs.import_from_nir(read, use_metadata=False))
    flips = sum(int((a != b).sum()) for a, b in zip(spikes, reference_spikes))
    assert flips <= sum(s.numel() for s in spikes) // 1000
