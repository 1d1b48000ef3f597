"""NeuroBench's own Benchmark on our networks (bntt_snntorch.analysis.neurobench) and its agreement with
our counts (bntt_snntorch.analysis.energy): per layer, the effective synaptic operations (equal up to
float summation order, relative 1e-9) and the activation sparsity (1e-12), the totals, the accuracy;
and ``analyze --neurobench``."""

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bntt_snntorch import encoding
from bntt_snntorch.analysis import count_operations
from bntt_snntorch.analysis.energy import average_operations
from bntt_snntorch.models import create_model

from .helpers import assert_close

pytest.importorskip("neurobench", reason="the [neurobench] extra is not installed")
from bntt_snntorch.analysis.neurobench import NeuroBenchNet, compare_with_ours, neurobench_metrics  # noqa: E402

T = 6


def _net(seed=0):
    torch.manual_seed(seed)
    return create_model("bntt_digits", num_steps=T).eval()


def _coder(seed):
    generator = torch.Generator().manual_seed(seed)
    return lambda images: encoding.encode(images, T, "p", generator)


def test_the_adapter_runs_the_reference_semantics_and_restores_the_step_modes():
    net = _net()
    x_seq = encoding.encode(torch.randn(5, 1, 8, 8) * 1.5, T, "p", torch.Generator().manual_seed(1))
    modes = [m.step_mode for m in net.modules() if hasattr(m, "step_mode")]
    adapter = NeuroBenchNet(net)
    logits = adapter(x_seq.transpose(0, 1))
    assert_close(logits, net(x_seq), atol=1e-5)
    assert_close(logits, net.forward_per_step(x_seq), atol=1e-5)
    assert [m.step_mode for m in net.modules() if hasattr(m, "step_mode")] == modes
    # a second batch starts from a zero membrane, not the first batch's last one
    assert_close(adapter(x_seq.transpose(0, 1)), logits, atol=0, rtol=0)


def test_neurobench_and_our_counts_agree_layer_by_layer():
    net = _net(seed=2)
    images, labels = torch.randn(40, 1, 8, 8) * 1.5, torch.randint(0, 10, (40,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)  # 16, 16, 8: unequal batches weigh in
    results = neurobench_metrics(net, loader, _coder(7))
    coder = _coder(7)  # the same Poisson draws as NeuroBench saw
    per_batch, correct = [], 0
    for x, y in loader:
        x_seq = coder(x)
        per_batch.append(count_operations(net, x_seq))
        correct += int((net(x_seq).argmax(-1) == y).sum())
    ours = average_operations(per_batch, [len(x) for x, _ in loader])
    rows = compare_with_ours(results, ours)

    assert results["ClassificationAccuracy"] == pytest.approx(correct / 40, abs=1e-12)
    by_layer = results["SynapticOperationsByLayer"]
    assert len(rows) == len(ours) + 1 == len(by_layer) + 1 == 7
    for row in rows:
        assert row["neurobench_effective_ops"] > 0
        assert row["ours_effective_ops"] == pytest.approx(row["neurobench_effective_ops"], rel=1e-9), row["layer"]
        if row["layer"] not in ("classifier", "total"):
            assert row["ours_activation_sparsity"] == pytest.approx(row["neurobench_activation_sparsity"], abs=1e-12)
            assert row["ours_rate_estimate"] > row["ours_effective_ops"] or row["layer"] == "features.7"
    # NeuroBench's totals are the sum of its per-layer counts (our metric is its function, per layer)
    totals = results["SynapticOperations"]
    assert sum(c["effective_acs"] for c in by_layer.values()) == pytest.approx(totals["Effective_ACs"], rel=1e-12)
    assert sum(c["effective_macs"] for c in by_layer.values()) == pytest.approx(totals["Effective_MACs"], rel=1e-12)
    # the kinds: signed Poisson spikes are ACs for both; average-pooled spikes are MACs to NeuroBench only
    kinds = {r["layer"]: (r["neurobench_kind"], r["ours_kind"], bool(r["note"])) for r in rows[:-1]}
    assert kinds["features.0"] == kinds["features.1"] == kinds["classifier"] == ("AC", "AC", False)
    assert kinds["features.3"] == kinds["features.7"] == ("MAC", "AC", True)
    assert 0 < results["MembraneUpdates"] and results["ParameterCount"] == sum(p.numel() for p in net.parameters())


def test_analyze_writes_neurobench_beside_ours(tmp_path):
    from bntt_snntorch.commands.analyze import run as analyze_main
    from bntt_snntorch.commands.train import get_args_parser, main

    run = tmp_path / "run"
    main(get_args_parser().parse_args(["--num_epochs", "1", "--max-batches", "3", "--num_steps", "4",
                                       "--output-dir", str(run), "--no-progress"]))  # fmt: skip
    assert analyze_main([str(run), "--neurobench", "--max-batches", "2"]) == 0
    out = run / "analysis"
    written = json.loads((out / "neurobench.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    batch_size = json.loads((run / "config.json").read_text())["batch_size"]  # the recipe's
    assert written["samples"] == summary["neurobench"]["samples"] == 2 * batch_size
    assert summary["neurobench"]["accuracy"] == pytest.approx(summary["early_exit"]["accuracy_full"], abs=1e-12)
    total = written["comparison"][-1]
    assert total["ours_effective_ops"] == pytest.approx(total["neurobench_effective_ops"], rel=1e-9)
    table = (out / "summary.md").read_text()
    assert "## NeuroBench" in table and "| features.3 |" in table and "average-pooled" in table


def test_analyze_neurobench_without_the_package_says_how_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    from bntt_snntorch.commands.analyze import run as analyze_main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "neurobench" else real(name, *a))
    assert analyze_main([str(tmp_path / "run"), "--neurobench"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "bntt_snntorch[neurobench]"' in err


def test_the_committed_default_run_reanalyses_to_its_committed_neurobench_figures(tmp_path):
    from pathlib import Path

    from bntt_snntorch.experiments import AnalysisOptions, analyze_run

    run = Path(__file__).parent.parent / "results" / "digits-bntt"
    committed = json.loads((run / "analysis" / "neurobench.json").read_text())
    summary = analyze_run(run, AnalysisOptions(energy=True, neurobench=True, analysis_dir=str(tmp_path)))
    again = json.loads((tmp_path / "neurobench.json").read_text())
    assert summary["neurobench"]["samples"] == committed["samples"] == 360
    # another CPU rounds the convolutions otherwise and may flip a spike that sits on the threshold
    assert again["neurobench"]["ClassificationAccuracy"] == pytest.approx(
        committed["neurobench"]["ClassificationAccuracy"], abs=0.01
    )
    assert again["neurobench"]["ActivationSparsity"] == pytest.approx(
        committed["neurobench"]["ActivationSparsity"], abs=1e-3
    )
    assert again["neurobench"]["ParameterCount"] == committed["neurobench"]["ParameterCount"]
    for row, old in zip(again["comparison"], committed["comparison"], strict=True):
        assert row["neurobench_effective_ops"] == pytest.approx(old["neurobench_effective_ops"], rel=1e-3), row["layer"]
