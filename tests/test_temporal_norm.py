"""BN over time, tdBN and TEBN against plain per-step references of their papers' formulas
(values, gradients, running statistics; train and eval), SpikingJelly's layers where installed,
and ``--norm`` through the models, train.py and saved runs.

Tolerances (float32): values and gradients 1e-5 abs / 1e-5 rel."""

import csv
import json
import statistics

import pytest
import torch

import bntt_snntorch as bs
from bntt_snntorch import create_model
from bntt_snntorch.commands.train import config_from_args, get_args_parser, main
from bntt_snntorch.temporal_norm import create_norm, list_norms
from bntt_snntorch.training import ConfigError, load_run

from .helpers import assert_close

EPS, MOMENTUM = 1e-5, 0.1
KINDS = {  # kind -> (1d class, 2d class, extra constructor args)
    "bn": (bs.BatchNormOverTime1d, bs.BatchNormOverTime2d, lambda T: ()),
    "tdbn": (bs.ThresholdDependentBatchNorm1d, bs.ThresholdDependentBatchNorm2d, lambda T: (T, 0.7, 0.5)),
    "tebn": (bs.TemporalEffectiveBatchNorm1d, bs.TemporalEffectiveBatchNorm2d, lambda T: (T,)),
}
SHAPES = {"1d": (3, 6), "1d-L": (3, 6, 5), "2d": (3, 6, 4, 4)}  # one step (B, C, ...)


def _reference(x_seq, gamma, beta, scale, running_mean, running_var, training):
    """The papers' formula step by step: statistics over (T, B, spatial) per channel (training) or the
    running ones (eval); ``y_t = s_t * (gamma * (x_t - mu) / sqrt(var + eps) + beta)``; the running
    statistics move by ``momentum`` towards the batch mean and the unbiased batch variance."""
    C = x_seq.shape[2]
    per_channel = x_seq.transpose(0, 2).reshape(C, -1)  # (C, T*B*spatial)
    if training:
        mu, var = per_channel.mean(1), per_channel.var(1, unbiased=False)
        n = per_channel.shape[1]
        new_mean = (1 - MOMENTUM) * running_mean + MOMENTUM * mu.detach()
        new_var = (1 - MOMENTUM) * running_var + MOMENTUM * var.detach() * n / (n - 1)
    else:
        mu, var, new_mean, new_var = running_mean, running_var, running_mean, running_var
    view = (1, -1) + (1,) * (x_seq.dim() - 3)
    outputs = []
    for t, x in enumerate(x_seq):
        x_hat = (x - mu.view(view)) / torch.sqrt(var.view(view) + EPS)
        outputs.append(scale[t] * (gamma.view(view) * x_hat + beta.view(view)))
    return torch.stack(outputs), new_mean, new_var


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("training", [True, False])
def test_equals_the_papers_formula(kind, shape, training):
    T = 4
    cls1, cls2, extra = KINDS[kind]
    step = SHAPES[shape]
    layer = (cls2 if len(step) == 4 else cls1)(6, *extra(T))
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.5, 2.0)
        if kind == "tebn":
            layer.scale.uniform_(0.5, 1.5)
    layer.train(training)
    gamma = layer.weight.detach().clone().requires_grad_()
    beta = layer.bias.detach().clone().requires_grad_()
    scale = (layer.scale if kind == "tebn" else torch.ones(T)).detach().clone().requires_grad_()
    mean0, var0 = layer.running_mean.clone(), layer.running_var.clone()
    x = torch.randn(T, *step) * 2 + 0.7
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = layer(xa)
    y_ref, mean_ref, var_ref = _reference(xb, gamma, beta, scale, mean0, var0, training)
    assert_close(y, y_ref, msg="values")
    assert_close(layer.running_mean, mean_ref, msg="running mean")
    assert_close(layer.running_var, var_ref, msg="running var")
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    assert_close(xa.grad, xb.grad, msg="input grad")
    assert_close(layer.weight.grad, gamma.grad, msg="weight grad")
    assert_close(layer.bias.grad, beta.grad, msg="bias grad")
    if kind == "tebn":
        assert_close(layer.scale.grad, scale.grad, msg="scale grad")


def test_constructors_defaults_and_step_calls():
    td = bs.ThresholdDependentBatchNorm2d(8, 4, alpha=0.5, v_th=0.6)
    assert torch.allclose(td.weight, torch.full((8,), 0.3)) and (td.eps, td.momentum) == (1e-5, 0.1)
    assert torch.equal(bs.ThresholdDependentBatchNorm1d(3, 2).weight, torch.ones(3))
    te = bs.TemporalEffectiveBatchNorm2d(8, 4)
    assert te.scale.shape == (4,) and set(te.state_dict()) == set(torch.nn.BatchNorm2d(8).state_dict()) | {"scale"}
    x = torch.randn(3, 2, 8, 3, 3)
    with pytest.raises(RuntimeError, match="per-step calls need eval mode"):
        te.step(x[0], 0)
    for layer in (te, td, bs.BatchNormOverTime2d(8)):
        layer(torch.randn(4, 5, 8, 3, 3))  # move the running statistics
        layer.eval()
        assert_close(torch.stack([layer.step(x[t], t) for t in range(3)]), layer(x), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"5 steps .*time_steps=4"):
        te(torch.randn(5, 2, 8, 3, 3))
    with pytest.raises(ValueError, match=r"expected a sequence \(T, B, C, H, W\) with C=8, got shape \(2, 8, 3, 3\)"):
        te(torch.randn(2, 8, 3, 3))


@pytest.mark.parametrize("kind", ["tdbn", "tebn"])
def test_loads_and_equals_spikingjelly(kind):
    layer = pytest.importorskip("spikingjelly.activation_based.layer")
    T = 3
    if kind == "tdbn":
        theirs, ours = layer.ThresholdDependentBatchNorm2d(1.0, 1.0, 6), bs.ThresholdDependentBatchNorm2d(6, T)
    else:
        theirs, ours = layer.TemporalEffectiveBatchNorm2d(T, 6), bs.TemporalEffectiveBatchNorm2d(6, T)
        with torch.no_grad():
            theirs.scale.uniform_(0.5, 1.5)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict(theirs.state_dict())
    for training in (True, False):
        theirs.train(training), ours.train(training)
        x = torch.randn(T, 4, 6, 3, 3) + 0.3
        assert_close(ours(x), theirs(x), msg=f"training={training}")
        assert_close(ours.running_mean, theirs.running_mean)


def test_every_norm_builds_the_bntt_vggs_and_runs_both_ways():
    x = torch.randn(3, 2, 1, 8, 8)
    for kind in list_norms():
        model = create_model("bntt_digits", num_steps=3, norm=kind).eval()
        assert_close(model.forward_per_step(x), model(x), atol=1e-5, rtol=1e-5, msg=kind)
        norms = [b.norm for b in model.features if hasattr(b, "norm")]
        expected = type(create_norm(kind, 4, 3, dims=2))
        assert all(type(n) is expected for n in norms[:-1]), kind
    default = create_model("vgg9", num_steps=2)
    assert isinstance(default.features[0].norm, bs.BatchNormTT2d) and default.features[0].norm[0].eps == 1e-4
    assert create_model("vgg9", num_steps=2, norm="tdbn").features[0].norm.eps == 1e-5  # tdBN keeps its paper's eps


def test_norm_flag_is_recorded_and_old_runs_load(tmp_path):
    main(
        get_args_parser().parse_args(
            [
                "--norm",
                "tebn",
                "--num-epochs",
                "1",
                "--max-batches",
                "2",
                "--num-steps",
                "3",
                "--output-dir",
                str(tmp_path / "tebn"),
                "--no-progress",
            ]
        )
    )
    model, cfg, _ = load_run(tmp_path / "tebn")
    assert cfg.norm == "tebn" and isinstance(model.features[0].norm, bs.TemporalEffectiveBatchNorm2d)
    ckpt = torch.load(tmp_path / "tebn" / "best.pt", weights_only=False)
    del ckpt["config"]["norm"]  # a run saved before --norm existed
    ckpt["model"] = create_model("bntt_digits", num_steps=3, leak_mem=0.95).state_dict()
    torch.save(ckpt, tmp_path / "old.pt")
    old_model, old_cfg, _ = load_run(tmp_path / "old.pt")
    assert old_cfg.norm == "bntt" and isinstance(old_model.features[0].norm, bs.BatchNormTT2d)
    with pytest.raises(ConfigError, match="--norm bn applies to the BNTT VGGs"):
        config_from_args(get_args_parser().parse_args("--recipe rate-vs-direct --arch mlp --norm bn".split()))


@pytest.mark.slow
def test_compare_norms_writes_the_study(tmp_path, capsys):
    from bntt_snntorch.commands import compare_norms

    argv = [
        "--norms",
        "bntt",
        "tebn",
        "--seeds",
        "2",
        "--num-epochs",
        "1",
        "--max-batches",
        "2",
        "--output-dir",
        str(tmp_path),
        "--recipe",
        "digits-poisson",
        "--no-progress",
    ]
    assert compare_norms.run(argv) == 0
    per_run = list(csv.DictReader(open(tmp_path / "accuracy_per_step.csv")))
    table = list(csv.DictReader(open(tmp_path / "comparison.csv")))
    assert [r["norm"] for r in table] == ["bntt", "tebn"] and len(per_run) == 2 * 2 * 10
    for row in table:
        finals = [float(r["accuracy"]) for r in per_run if r["norm"] == row["norm"] and r["step"] == "10"]
        assert float(row["test_acc"]) == pytest.approx(statistics.mean(finals))
        assert float(row["test_acc_std"]) == pytest.approx(statistics.stdev(finals))
    text = (tmp_path / "comparison.md").read_text()
    assert "| BNTT |" in text and "| TEBN |" in text and "BNTT mean gamma per step" in text
    assert "--norms bntt tebn --seeds 2" in text and "--recipe digits-poisson" in text
    assert json.loads((tmp_path / "bntt-seed0" / "config.json").read_text())["encode"] == "p"
    for png in ("accuracy_vs_step.png", "gammas.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {
        "bntt-seed0",
        "bntt-seed1",
        "tebn-seed0",
        "tebn-seed1",
    }
    argv.remove("--recipe"), argv.remove("digits-poisson")  # the default recipe now codes directly: not reused
    capsys.readouterr()
    assert compare_norms.run(argv) == 2
    assert "bntt-seed0 holds a run trained with encode 'p' (asked: 'd')" in capsys.readouterr().err
