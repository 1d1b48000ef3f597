"""Early exit from gammas, per-step accuracy, spike rates, operation counts and energy, analyze CLI."""

import csv
import json

import pytest
import torch
from torch import nn

from bntt_snntorch import MultiStepLeaky, encoding
from bntt_snntorch.analysis import count_operations, energy_table, exit_step, gamma_curves, mean_gamma_curve
from bntt_snntorch.layers import SpikingBlock, TimeDistributed
from bntt_snntorch.models import SpikingNet, create_model

from .helpers import assert_close


def test_exit_rule_on_hand_set_gammas():
    model = create_model("bntt_digits", num_steps=6)
    per_step = [1.0, 0.8, 0.5, 0.2, 0.05, 0.01]
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "gammas"):
                for t, bn in enumerate(m):
                    bn.weight.fill_(per_step[t])
    curve = mean_gamma_curve(model)
    assert_close(curve, torch.tensor(per_step))
    assert len(gamma_curves(model)) == 5  # four conv BNTTs and the FC one
    assert exit_step(curve, 0.1) == 4  # step index 4 (gamma 0.05) is the first below 0.1: run 4 steps
    assert exit_step(curve, 0.6) == 2
    assert exit_step(curve, 0.001) == 6  # never below: all steps
    assert exit_step(curve, 2.0) == 1  # at least one step


def test_fewer_steps_equal_the_first_steps_of_the_full_run():
    model = create_model("bntt_digits", num_steps=8).eval()
    x = encoding.encode(torch.randn(5, 1, 8, 8), 8, "p", torch.Generator().manual_seed(0))
    every = model.forward_steps(x)
    for k in (1, 3, 8):
        assert_close(model(x[:k]), every[k - 1], atol=1e-5)
        assert_close(model.forward_per_step(x[:k]), every[k - 1], atol=1e-5)


def _tiny_net():
    lif = lambda: MultiStepLeaky(0.5, threshold=1.0)  # noqa: E731
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    fc = nn.Linear(8, 3, bias=False)
    net = SpikingNet(
        [
            SpikingBlock(conv, None, lif()),
            TimeDistributed(nn.AvgPool2d(2)),
            TimeDistributed(nn.Flatten()),
            SpikingBlock(fc, None, lif()),
        ],
        nn.Linear(3, 2, bias=False),
        num_steps=2,
        in_channels=1,
    )
    with torch.no_grad():
        conv.weight.fill_(0.6)
        fc.weight.fill_(1.0)
        net.classifier.weight.fill_(1.0)
    return net


def test_operation_counts_and_rates_equal_a_hand_count():
    net = _tiny_net()
    x = torch.zeros(2, 1, 1, 4, 4)
    x[0, 0, 0, :2, :2] = 1  # step 0: 4 of 16 inputs spike
    x[1, 0, 0, 0, :] = 1  # step 1: 4 of 16
    ops = {op.name: op for op in count_operations(net, x)}
    conv, fc, readout = ops["features.0"], ops["features.3"], ops["classifier"]
    assert (conv.macs, fc.macs, readout.macs) == (2 * 4 * 4 * 1 * 9, 8 * 3, 3 * 2)
    assert conv.input_rate == pytest.approx(8 / 32) and not conv.analog_input
    assert conv.snn_ops == pytest.approx(288 * 0.25 * 2)
    # Hand count of the conv layer's spikes: re-run it by hand.
    cur = net.features[0].synapse(x.flatten(0, 1)).unflatten(0, (2, 1))
    spikes, _ = net.features[0].neuron(cur)
    assert conv.output_rate == pytest.approx(spikes.mean().item())
    pooled = nn.functional.avg_pool2d(spikes.flatten(0, 1), 2)
    assert fc.input_rate == pytest.approx((pooled != 0).float().mean().item())
    rows = energy_table(list(ops.values()), mac_pj=4.6, ac_pj=0.9)
    total = rows[-1]
    assert total["ann_pj"] == pytest.approx((288 + 24 + 6) * 4.6)
    assert total["snn_pj"] == pytest.approx(sum(op.snn_ops for op in ops.values()) * 0.9)


def test_effective_operations_equal_a_hand_count_of_the_taps():
    net = _tiny_net()
    x = torch.zeros(2, 1, 1, 4, 4)
    x[0, 0, 0, :2, :2] = 1  # the 2x2 corner: its inputs reach 4, 6, 6 and 9 in-bounds outputs (3x3, padding 1)
    x[1, 0, 0, 0, :] = 1  # the top row: 4, 6, 6 and 4
    conv = count_operations(net, x)[0]
    assert conv.effective_ops == (25 + 20) * 2 and conv.neurons == 2 * 4 * 4  # two output channels
    assert conv.snn_ops == 288 * 0.25 * 2  # the rate estimate counts the padding taps too
    with torch.no_grad():
        net.features[0].synapse.weight[1] = 0  # a pruned channel makes no operations
    assert count_operations(net, x)[0].effective_ops == 25 + 20


def test_direct_coding_first_layer_counts_macs():
    net = _tiny_net()
    x = encoding.direct(torch.rand(3, 1, 4, 4) + 0.1, 2)
    first = count_operations(net, x)[0]
    assert first.analog_input and first.snn_ops == first.macs * 2
    assert first.energy(4.6, 0.9)["snn_pj"] == pytest.approx(first.macs * 2 * 4.6)


def test_analyze_command_writes_tables_and_plots(tmp_path):
    from bntt_snntorch.commands.analyze import run as analyze_main
    from bntt_snntorch.commands.train import get_args_parser, main

    run = tmp_path / "run"
    main(
        get_args_parser().parse_args(
            ["--num_epochs", "1", "--max-batches", "4", "--num_steps", "6", "--output-dir", str(run), "--no-progress"]
        )
    )
    assert analyze_main([str(run), "--plots", "--max-batches", "2"]) == 0
    out = run / "analysis"
    for name in (
        "gammas.csv",
        "accuracy_per_step.csv",
        "energy.csv",
        "summary.json",
        "gamma_over_time.png",
        "accuracy_vs_exit_step.png",
        "spike_rates.png",
        "energy.png",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "accuracy_per_step.csv")))
    assert [int(r["num_steps"]) for r in rows] == list(range(1, 7))
    summary = json.load(open(out / "summary.json"))
    assert 1 <= summary["early_exit"]["exit_steps"] <= 6
    assert summary["energy"]["snn_uj"] > 0
    images = summary["energy"]["images"]
    assert 0 < images <= 4 * 64 and f"rate estimate over {images} test images" in (out / "summary.md").read_text()
    assert set(summary["energy"]["spike_rates"]) == {
        "features.0",
        "features.1",
        "features.3",
        "features.4",
        "features.7",
    }


def test_analyze_command_on_a_missing_or_bad_checkpoint(tmp_path):
    from bntt_snntorch.commands import main as command

    assert command(["analyze", str(tmp_path / "missing")]) == 2
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    assert command(["analyze", str(bad)]) == 2


def test_the_exit_speedup_is_timed_only_for_a_real_exit_as_a_median_of_alternated_passes():
    from bntt_snntorch.experiments.analyze import exit_speedup

    calls = []

    def model(x_seq):
        calls.append(len(x_seq))

    x_seq = torch.zeros(10, 2, 3)
    assert exit_speedup(model, x_seq, exit_at=10) is None and calls == []  # no step saved: nothing timed
    ticks = iter([0, 10, 10, 12, 12, 100, 100, 103, 103, 113, 113, 114, 114, 124, 124, 126, 126, 136, 136, 138])
    speedup = exit_speedup(model, x_seq, exit_at=4, repeats=5, clock=lambda: next(ticks))
    assert calls == [10, 4] + [10, 4] * 5  # one warm-up of each, then alternated
    assert speedup == 10 / 2  # median of (10, 88, 10, 10, 10) over median of (2, 3, 1, 2, 2)
