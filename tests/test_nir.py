"""NIR export and import (bntt_snntorch.nir_exchange): round trips through a real .nir file, the fidelity
report, the exact recipe read back by SpikingJelly's and snnTorch's importers, and one-line errors.

Equality: our import with the exported metadata runs the same layers, so outputs and spikes are
bit-equal. Readers of the NIR values alone (ours with use_metadata=False, the peers') compute the folded
synapses in another order, so a spike whose membrane sits on the threshold may flip: those tests count
the differing spikes and bound them (at most 0.1 % of spike positions; the outputs where no spike
differs agree to 1e-4)."""

import sys

import pytest
import torch
from torch import nn

import bntt_snntorch as bs
from bntt_snntorch.layers import SpikingBlock
from bntt_snntorch.models import is_ann, list_models
from bntt_snntorch.nir_exchange import FidelityReport, export_to_nir, import_from_nir

nir = pytest.importorskip("nir", reason="the nir extra: pip install -e '.[nir]'")
pytest.importorskip("nirtorch")

INPUTS = {"bntt_digits": (1, 8, 8), "rvd_mlp": (1, 28, 28)}  # the rest: (3, 32, 32)


def _trained_like(arch="bntt_digits", num_steps=6, seed=0, **kwargs):
    """A model whose norms hold running statistics of a few batches (as after training), in eval mode."""
    torch.manual_seed(seed)
    model = bs.create_model(arch, num_steps=num_steps, **kwargs)
    x_seq = _spikes(num_steps, 16, INPUTS.get(arch, (3, 32, 32)), seed + 1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x_seq)
    return model.eval(), x_seq


def _spikes(num_steps, batch, shape, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(num_steps, batch, *shape, generator=g) < 0.3).float()


def _round_trip(graph, tmp_path):
    path = tmp_path / "model.nir"
    nir.write(str(path), graph)
    return nir.read(str(path))


@torch.no_grad()
def _readout_and_spikes(model, x_seq):
    """The per-step readout ``(T, B, classes)`` and every block's spikes of a SpikingNet or NIRNetwork."""
    blocks = [m for m in model.modules() if isinstance(m, SpikingBlock)]
    spikes, hooks = [], [b.register_forward_hook(lambda m, a, y: spikes.append(y)) for b in blocks]
    try:
        out = model.classifier(model.features(x_seq)) if isinstance(model, bs.models.SpikingNet) else model(x_seq)
    finally:
        for h in hooks:
            h.remove()
    return out, spikes


def _flips(spikes_a, spikes_b) -> tuple[int, int]:
    return sum(int((a != b).sum()) for a, b in zip(spikes_a, spikes_b)), sum(a.numel() for a in spikes_a)


def test_the_exact_recipe_exports_exactly_and_reads_back_equal(tmp_path):
    model, x_seq = _trained_like(norm="bn", neuron="bntt_leaky_zero")
    graph = export_to_nir(model, x_seq[0], encoding="p")
    report = FidelityReport.of(graph)
    assert report.exact and len(report.nodes) == 14, str(report)  # 5 synapses + 5 neurons, 2 pools, flatten, readout
    assert "folded into weight and bias" in report.to_dict()["features_0_synapse"]["why"]
    read = _round_trip(graph, tmp_path)
    read.infer_types()
    ref_out, ref_spikes = _readout_and_spikes(model, x_seq)
    out, spikes = _readout_and_spikes(import_from_nir(read), x_seq)
    assert torch.equal(out, ref_out) and all(torch.equal(a, b) for a, b in zip(spikes, ref_spikes))
    out, spikes = _readout_and_spikes(import_from_nir(read, use_metadata=False), x_seq)
    flips, total = _flips(spikes, ref_spikes)
    assert flips <= total // 1000, f"{flips} of {total} spikes differ"
    if flips == 0:
        torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    assert read.metadata["bntt_snntorch"]["readout"] == "mean over T"
    assert "Poisson" in read.metadata["bntt_snntorch"]["input"]


def test_bntt_is_reported_approximate_and_restored_exactly_from_the_metadata(tmp_path):
    model, x_seq = _trained_like()  # the default: BNTT and the seed neuron (reset by subtraction)
    read = _round_trip(export_to_nir(model, x_seq[0]), tmp_path)
    report = FidelityReport.of(read)
    approximate = {n.node for n in report.approximate}
    assert approximate == {f"features_{i}_{part}" for i in (0, 1, 3, 4, 7) for part in ("synapse", "neuron")}
    assert "scale and shift per step" in report.to_dict()["features_0_synapse"]["why"]
    assert "reset by subtraction" in report.to_dict()["features_0_neuron"]["why"]
    assert report.to_dict()["classifier"]["exact"] and report.to_dict()["features_2_module"]["exact"]
    ref_out, ref_spikes = _readout_and_spikes(model, x_seq)
    out, spikes = _readout_and_spikes(import_from_nir(read), x_seq)
    assert torch.equal(out, ref_out) and all(torch.equal(a, b) for a, b in zip(spikes, ref_spikes))
    folded, _ = _readout_and_spikes(import_from_nir(read, use_metadata=False), x_seq)
    assert not torch.equal(folded, ref_out)  # what the fold and the reset change (measured in results/nir-digits)


def test_the_studys_fold_is_the_one_the_export_writes():
    """bntt_folded (the study's "only BNTT folded" row) equals the NIR values of a BNTT net whose neurons
    reset to zero, where the fold is the export's only approximation."""
    from bntt_snntorch.experiments.nir_study import bntt_folded

    model, x_seq = _trained_like(neuron="bntt_leaky_zero")
    graph = export_to_nir(model, x_seq[0])
    assert {n.node for n in FidelityReport.of(graph).approximate} == {f"features_{i}_synapse" for i in (0, 1, 3, 4, 7)}
    ref_out, ref_spikes = _readout_and_spikes(bntt_folded(model), x_seq)
    out, spikes = _readout_and_spikes(import_from_nir(graph, use_metadata=False), x_seq)
    flips, total = _flips(spikes, ref_spikes)
    assert flips <= total // 1000, f"{flips} of {total} spikes differ"
    if flips == 0:
        torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    assert not torch.equal(ref_out, _readout_and_spikes(model, x_seq)[0])  # the fold changes the network


def test_bntt_with_equal_steps_is_exact():
    model, x_seq = _trained_like(neuron="bntt_leaky_zero")
    with torch.no_grad():
        for norm in (m.norm for m in model.modules() if isinstance(m, SpikingBlock)):
            for bn in norm:
                bn.load_state_dict(norm[0].state_dict())
    assert FidelityReport.of(export_to_nir(model, x_seq[0])).exact


@pytest.mark.parametrize("arch", [a for a in list_models() if not is_ann(a)])
def test_every_spiking_model_of_the_registry_round_trips(arch, tmp_path):
    model, x_seq = _trained_like(arch, num_steps=2)
    x_seq = x_seq[:, :2]
    read = _round_trip(export_to_nir(model, x_seq[0]), tmp_path)
    ref_out, ref_spikes = _readout_and_spikes(model, x_seq)
    out, spikes = _readout_and_spikes(import_from_nir(read), x_seq)
    assert torch.equal(out, ref_out) and all(torch.equal(a, b) for a, b in zip(spikes, ref_spikes))


@pytest.mark.parametrize("arch", [a for a in list_models() if is_ann(a)])
def test_an_ann_is_refused_with_one_line(arch):
    model = bs.create_model(arch)
    with pytest.raises(ValueError, match=r"ANN and NIR has no ReLU node: convert it") as err:
        export_to_nir(model, torch.zeros(1, 3, 32, 32))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("one_step", [True, False])
def test_a_converted_snn_round_trips(one_step, tmp_path):
    from bntt_snntorch.conversion import convert

    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    snn = convert(ann, [0.8], one_step=one_step)
    images = torch.rand(5, 1, 8, 8)
    read = _round_trip(export_to_nir(snn, images), tmp_path)
    report = FidelityReport.of(read)
    assert [n.node for n in report.approximate] == ["stages_0_neuron"]  # IF with reset by subtraction
    assert ("stages_0_delay" in read.nodes) == (not one_step)
    net = import_from_nir(read)
    expected = snn(images, 12)  # (T, B, classes)
    assert torch.equal(net(images.expand(12, *images.shape)), expected)


def test_a_user_sequential_of_snntorch_and_our_layers(tmp_path):
    import snntorch as snn

    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        bs.BatchNormTT2d(4, 5),
        snn.Leaky(beta=0.9, reset_mechanism="zero", reset_delay=False, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64, 10),
        bs.Leaky(0.8, init_hidden=True, graded_spikes_factor=0.5),
    )
    with torch.no_grad():
        for bn in seq[1]:
            bn.running_mean.uniform_(-0.1, 0.1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 2)
    seq.eval()
    x_seq = torch.rand(5, 3, 1, 8, 8)
    read = _round_trip(export_to_nir(seq, x_seq[0]), tmp_path)
    report = FidelityReport.of(read).to_dict()
    assert report["2"]["exact"] and not report["0"]["exact"]  # snnTorch's same-step zero reset; per-step BNTT
    assert report["7_graded"]["exact"] and not report["7"]["exact"]  # our Leaky: subtract reset
    assert "the identity at inference" in report["5 (skipped)"]["why"]  # reported, never dropped silently
    bs.utils.reset(seq)
    with torch.no_grad():
        expected = torch.stack([seq(x) for x in x_seq])  # snnTorch style: one step a call
    assert torch.equal(import_from_nir(read)(x_seq), expected)


def test_a_layer_nir_cannot_express_is_one_clear_error():
    seq = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), bs.Leaky(0.9))
    with pytest.raises(ValueError, match=r"cannot export layer 1 \(MaxPool2d\)"):
        export_to_nir(seq, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"cannot export 1: a neuron without reset"):
        export_to_nir(nn.Sequential(nn.Linear(4, 4), bs.Leaky(0.9, reset_mechanism="none")), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"cannot export 0: a normalisation must directly follow"):
        export_to_nir(nn.Sequential(bs.BatchNormTT1d(4, 2), nn.Linear(4, 4)), torch.zeros(1, 4))


def test_without_the_nir_extra_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ImportError, match=r"pip install 'bntt_snntorch\[nir\]'"):
        export_to_nir(nn.Sequential(nn.Linear(4, 4), bs.Leaky(0.9)), torch.zeros(1, 4))


@pytest.mark.parametrize("peer", ["SpikingJelly", "snnTorch"])
def test_the_peers_read_the_exact_export_with_the_same_spikes(peer, tmp_path):
    from bntt_snntorch.experiments.nir_study import read_with_snntorch, read_with_spikingjelly

    if peer == "SpikingJelly":
        pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    model, x_seq = _trained_like(norm="bn", neuron="bntt_leaky_zero")
    read = _round_trip(export_to_nir(model, x_seq[0]), tmp_path)
    ref_out, ref_spikes = _readout_and_spikes(model, x_seq)
    names = [f"features_{i}_neuron" for i in (0, 1, 3, 4, 7)]
    reader = read_with_spikingjelly if peer == "SpikingJelly" else read_with_snntorch
    out, spikes = reader(read, x_seq, names)
    flips, total = _flips([spikes[n].reshape(r.shape) for n, r in zip(names, ref_spikes)], ref_spikes)
    assert flips <= total // 1000, f"{peer}: {flips} of {total} spikes differ"
    if flips == 0:
        torch.testing.assert_close(out.reshape(ref_out.shape), ref_out, rtol=1e-4, atol=1e-4)


def test_the_export_command_writes_the_graph_and_its_report(tmp_path):
    from bntt_snntorch.commands import export
    from bntt_snntorch.training import TrainConfig, train

    cfg = TrainConfig.from_recipe("digits", norm="bn", neuron="bntt_leaky_zero", num_epochs=1, max_batches=2,
                                  num_steps=3, output_dir=str(tmp_path / "run"), progress=False)  # fmt: skip
    train(cfg)
    out = tmp_path / "deploy" / "model.nir"
    assert export.run(["--checkpoint", str(tmp_path / "run" / "last.pt"), "--output", str(out)]) == 0
    assert FidelityReport.of(nir.read(str(out))).exact
    text = (tmp_path / "deploy" / "model.fidelity.md").read_text()
    assert "every node is exact" in text and "| features_0_synapse | exact |" in text
    assert export.run(["--checkpoint", str(tmp_path / "missing"), "--output", str(out)]) == 2


@pytest.mark.slow
def test_the_nir_study_reads_both_networks_back(tmp_path):
    from bntt_snntorch.experiments import NIRStudyOptions, compare_nir

    pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    options = NIRStudyOptions(num_epochs=1, max_test_images=32, output_dir=str(tmp_path), progress=False)
    rows = compare_nir(options)
    by = {(r["net"], r["reader"]): r for r in rows}
    assert len(by) == 12 and {net for net, _ in by} == {"exact", "bntt"}
    assert ("bntt", "trained, only BNTT folded") in by and ("exact", "trained, only BNTT folded") not in by
    for net in ("exact", "bntt"):
        ours, trained = by[net, "ours"], by[net, "trained"]
        assert ours["differing_spikes"] == 0 and ours["max_output_diff"] <= 1e-5, net  # restored from the metadata
        assert ours["test_acc"] == trained["test_acc"]
    peer = by["exact", "SpikingJelly 2.0"]
    assert peer["differing_spikes"] <= peer["spike_positions"] // 1000
    assert "| exact | ours |" in (tmp_path / "comparison.md").read_text()


def test_a_peers_refusal_is_one_line_and_a_bug_of_ours_propagates():
    """The NIR study records what a peer's importer or modules raise as its refusal, in one line; the study's own
    code is not wrapped, so an error of ours (here in the step loop's call) propagates."""
    from bntt_snntorch.experiments.nir_study import PeerRefused, _peer, _per_step

    def refusing(graph):
        raise NotImplementedError("no conversion for node type 'PerStepAffine'\nsee the docs")

    with pytest.raises(PeerRefused, match=r"^NotImplementedError: no conversion for node type 'PerStepAffine'$"):
        _peer(refusing, None)

    def ours(net, x, state):
        raise TypeError("'NoneType' object is not subscriptable")

    with pytest.raises(TypeError, match="not subscriptable"):
        _per_step(torch.nn.Identity(), torch.zeros(2, 1, 3), [], ours)
