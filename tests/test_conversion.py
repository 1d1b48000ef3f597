"""ANN -> SNN conversion (Lu & Sengupta 2020): binary layers, vgg15ab, percentile balancing, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from bntt_snntorch.commands.train import config_from_args, get_args_parser, main
from bntt_snntorch.conversion import ConvertedSNN, StreamingPercentile, activation_scales, convert
from bntt_snntorch.data import build_datasets
from bntt_snntorch.models import BinaryConv2d, BinaryLinear, create_model
from bntt_snntorch.models.ann import binarize
from bntt_snntorch.training import RECIPES, ConfigError

from .fake_data import write_imagenet
from .helpers import assert_close

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- binarization
def test_binarize_is_sign_times_per_channel_mean_abs():
    w = torch.randn(6, 4, 3, 3)
    alpha = w.abs().reshape(6, -1).mean(1)
    expected = torch.sign(w) * alpha.view(6, 1, 1, 1)
    assert_close(binarize(w), expected, atol=0, rtol=0)
    assert torch.unique(binarize(w)[2].abs()).numel() == 1  # one magnitude per output channel


def test_binary_gradient_is_xnor_nets():
    """Backward equals autograd through alpha * sign_ste(W) (sign's gradient 1[|W| <= 1]),
    scaled by n * (1 - 1 / in_channels) as XNOR-Net-PyTorch does."""
    layer = BinaryConv2d(4, 6, 3, bias=False).eval()
    with torch.no_grad():
        layer.weight.mul_(8)  # some weights beyond +-1, where the straight-through gradient is cut
    x, g = torch.randn(2, 4, 7, 7), torch.randn(2, 6, 5, 5)
    (layer(x) * g).sum().backward()

    w = layer.weight.detach().clone().requires_grad_(True)
    mask = (w.abs() <= 1).float()
    sign_ste = w.sign().detach() + w * mask - (w * mask).detach()
    alpha = w.abs().mean((1, 2, 3), keepdim=True)
    (F.conv2d(x, sign_ste * alpha) * g).sum().backward()
    n = w[0].numel()
    assert_close(layer.weight.grad, w.grad * n * (1 - 1 / 4), atol=1e-4, rtol=1e-5)


def test_binary_training_mode_centres_and_clamps_the_real_weights():
    layer = BinaryLinear(10, 4, bias=False)
    with torch.no_grad():
        layer.weight.mul_(5).add_(3)
    layer.eval()
    before = layer.weight.detach().clone()
    layer(torch.randn(2, 10))
    assert torch.equal(layer.weight, before)  # eval leaves them alone
    layer.train()
    layer(torch.randn(2, 10))
    expected = (before - before.mean(1, keepdim=True)).clamp(-1, 1)
    assert_close(layer.weight, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["vgg15ab_binary", "vggab_digits_binary"])
def test_first_and_last_layers_stay_full_precision(name):
    model = create_model(name)
    weights = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert type(weights[0]) is nn.Conv2d and type(weights[-1]) is nn.Linear
    assert all(isinstance(m, (BinaryConv2d, BinaryLinear)) for m in weights[1:-1])


# ----------------------------------------------------------------------------- vgg15ab
def test_vgg15ab_layout_and_init():
    model = create_model("vgg15ab", num_classes=100)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(m.bias is None for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    # the original code's state-dict keys (its checkpoints load)
    keys = list(model.state_dict())
    assert keys[:3] == ["features.0.weight", "features.3.weight", "features.6.weight"]
    assert keys[-2:] == ["classifier.1.weight", "top_layer.weight"]
    kinds = [type(m).__name__ for m in model.features[:6]]
    assert kinds == ["Conv2d", "ReLU", "Dropout", "Conv2d", "AvgPool2d", "ReLU"]  # pool before ReLU
    assert model.classifier[1].in_features == 512 and model.classifier[1].out_features == 4096
    assert abs(model.top_layer.weight.std().item() - 0.01) < 1e-3
    fan_out = 64 * 9
    assert abs(convs[1].weight.std().item() - (2 / fan_out) ** 0.5) < 0.01 * (2 / fan_out) ** 0.5 * 10
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    imagenet = create_model("vgg15ab", num_classes=1000, image_size=224)
    assert imagenet.classifier[1].in_features == 512 * 7 * 7


def test_ann_refuses_a_time_sequence():
    with pytest.raises(ValueError, match=r"expects images \(B, C, H, W\).*--encode none"):
        create_model("vggab_digits")(torch.randn(4, 2, 1, 8, 8))


# ----------------------------------------------------------------------------- percentile
@pytest.mark.parametrize("q", [0.0, 37.5, 99.7, 99.9, 100.0])
def test_streaming_percentile_equals_numpy(q):
    values = torch.randn(12345).abs() * (torch.rand(12345) > 0.4)  # ReLU-like: many zeros
    p = StreamingPercentile(q, values.numel())
    for chunk in values.split(1000):
        p.update(chunk)
    assert p.value() == pytest.approx(float(np.percentile(values.double().numpy(), q)), rel=1e-12, abs=1e-12)


def test_streaming_percentile_checks_the_count():
    p = StreamingPercentile(99.0, 10)
    p.update(torch.ones(4))
    with pytest.raises(ValueError, match="4 values, 10 were announced"):
        p.value()


def _small_ann():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.AvgPool2d(2),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 16, bias=False),
        nn.ReLU(),
        nn.Linear(16, 5, bias=False),
    )


def test_activation_scales_are_numpy_percentiles_of_each_relu():
    ann, x = _small_ann(), torch.randn(50, 1, 8, 8)
    scales = activation_scales(ann, iter(x.split(16)), 50, 99.0)
    assert ann.training  # restored after the eval-mode pass
    with torch.no_grad():
        ann.eval()  # no dropout, as in the balancing pass
        a1 = ann[:3](x)
        a2 = ann[:7](x)
    assert scales == pytest.approx([np.percentile(a1.numpy(), 99.0), np.percentile(a2.numpy(), 99.0)], rel=1e-6)


# ----------------------------------------------------------------------------- the converted net
@pytest.mark.parametrize("one_step", [True, False])
def test_multi_step_equals_step_by_step(one_step):
    ann, x = _small_ann(), torch.randn(6, 1, 8, 8) * 2
    snn_net = convert(ann, activation_scales(ann, [x], 6, 99.0), one_step=one_step)
    out = snn_net(x, 23, chunk_steps=5)
    state, steps = None, []
    for _ in range(23):
        o, state = snn_net.step(x, state)
        steps.append(o)
    assert_close(out, torch.stack(steps), atol=1e-6, rtol=1e-6)
    assert_close(out, snn_net(x, 23, chunk_steps=23), atol=1e-6, rtol=1e-6)
    if not one_step:  # a spike needs one step per layer: nothing reaches the output before step 3
        assert out[:2].abs().max() == 0 and out[2:].abs().max() > 0


def test_converted_net_is_snntorch_integrate_and_fire():
    ann = _small_ann()
    snn_net = convert(ann, [1.0, 1.0])
    neurons = [s.neuron for s in snn_net.stages if s.neuron is not None]
    assert isinstance(snn_net, ConvertedSNN) and len(neurons) == 2
    for n in neurons:
        assert isinstance(n, snn.Leaky) and float(n.beta) == 1.0 and float(n.threshold) == 1.0
        assert n.reset_mechanism == "subtract"
    assert not any(isinstance(m, nn.Dropout) for m in snn_net.modules())


def test_weights_are_rescaled_by_lambda_ratios():
    ann = _small_ann()
    snn_net = convert(ann, [2.0, 5.0])
    assert_close(snn_net.stages[0].synapse[0].weight, ann[0].weight / 2.0, atol=1e-7, rtol=0)
    assert_close(snn_net.stages[1].synapse[1].weight, ann[5].weight * 2.0 / 5.0, atol=1e-7, rtol=0)
    assert_close(snn_net.stages[2].synapse[0].weight, ann[7].weight * 5.0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("one_step", [True, False])
def test_balanced_snn_approaches_the_ann_at_large_t(one_step):
    """Balanced at the 100th percentile (no clipping), the output layer's mean input over T
    steps approaches the ANN's logits: rate coding error ~ layers / T; tolerance 3 % of the logit range."""
    torch.manual_seed(1)
    ann = nn.Sequential(
        nn.Linear(20, 32, bias=False), nn.ReLU(), nn.Linear(32, 16, bias=False), nn.ReLU(), nn.Linear(16, 5, bias=False)
    )
    x = torch.rand(64, 20)
    snn_net = convert(ann, activation_scales(ann, [x], 64, 100.0), one_step=one_step)
    with torch.no_grad():
        logits = ann(x)
        mean_out = snn_net(x, 3000, chunk_steps=500).mean(0)
    scale = (logits.max() - logits.min()).item()
    assert (mean_out - logits).abs().max().item() < 0.03 * scale
    assert (mean_out.argmax(1) == logits.argmax(1)).float().mean() > 0.95


def test_binary_ann_converts_with_its_binarized_weights():
    ann = create_model("vggab_digits_binary").eval()
    snn_net = convert(ann, [1.0] * 7)
    binary = ann.features[3]
    assert isinstance(binary, BinaryConv2d)
    assert_close(snn_net.stages[1].synapse[0].weight, binarize(binary.weight), atol=1e-7, rtol=0)


def test_unsupported_layers_are_named():
    with pytest.raises(ValueError, match="cannot convert a MaxPool2d layer"):
        convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)), [1.0])
    with pytest.raises(ValueError, match="output layer"):
        convert(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), [1.0])


# ----------------------------------------------------------------------------- training and the CLI
def test_ann_and_encoding_must_match():
    with pytest.raises(ConfigError, match="is an ANN.*--encode none"):
        config_from_args(get_args_parser().parse_args(["--arch", "vggab_digits"]))
    with pytest.raises(ConfigError, match="--encode none gives no time axis"):
        config_from_args(get_args_parser().parse_args(["--encode", "none"]))


def test_recipes_of_the_source_schedules():
    fp = config_from_args(get_args_parser().parse_args(["--recipe", "bsnn-cifar100-fp", "--dataset", "cifar100"]))
    from bntt_snntorch.training.trainer import build_optimizer

    model = nn.Linear(2, 2)
    _, sched = build_optimizer(fp, model)
    assert sorted(sched.milestones) == [81, 122] and fp.lr == 0.05 and fp.batch_size == 256
    binary = config_from_args(
        get_args_parser().parse_args(["--recipe", "bsnn-imagenet-binary", "--dataset", "imagenet"])
    )
    optimizer, sched = build_optimizer(binary, model)
    assert optimizer.param_groups[0]["betas"] == (0.0, 0.999)
    lrs = []
    for _ in range(61):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched.step()
    assert lrs[29] == 5e-4 and lrs[30] == 2.5e-4 and lrs[60] == 1.25e-4


def test_weight_decay_switches_off_after_its_epoch(tmp_path, monkeypatch):
    monkeypatch.setitem(RECIPES, "wd-switch", dict(RECIPES["bsnn-digits-binary"], weight_decay_until=1, num_epochs=2))
    argv = ["--recipe", "wd-switch", "--max-batches", "1", "--output-dir", str(tmp_path), "--no-progress"]
    main(get_args_parser().parse_args(argv))
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["optimizer"]["param_groups"][0]["weight_decay"] == 0.0
    assert RECIPES["bsnn-digits-binary"]["weight_decay"] == 5e-4


def _train_tiny_ann(out: Path, recipe="bsnn-digits-fp"):
    argv = ["--recipe", recipe, "--num_epochs", "1", "--max-batches", "3", "--output-dir", str(out), "--no-progress"]
    main(get_args_parser().parse_args(argv))
    return out


def _convert_cli(*argv):
    return subprocess.run(
        [sys.executable, "-m", "bntt_snntorch", "convert", *argv, "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_a_saved_checkpoint_converts_through_the_cli(tmp_path):
    run = _train_tiny_ann(tmp_path / "ann")
    job = tmp_path / "job"
    res = _convert_cli(
        "--job-dir",
        str(job),
        "--model",
        str(run),
        "--time",
        "12",
        "--eval_size",
        "50",
        "--norm",
        "100",
        "--results-file",
        "acc.csv",
        "--one-step",
    )
    assert res.returncode == 0, res.stderr
    rows = (job / "acc.csv").read_text().splitlines()
    assert rows[0] == "step,snn_accuracy,ann_accuracy" and len(rows) == 13
    summary = json.loads((job / "summary.json").read_text())
    assert summary["arch"] == "vggab_digits" and summary["eval_size"] == 50 and len(summary["scales"]) == 7
    assert summary["ann_accuracy"] == float(rows[1].split(",")[2]) and summary["num_steps"] == 12
    assert (job / "accuracy_vs_time.png").stat().st_size > 10_000


@pytest.mark.slow
def test_cli_names_both_architectures_on_a_mismatch(tmp_path):
    run = _train_tiny_ann(tmp_path / "ann")
    res = _convert_cli("--job-dir", str(tmp_path / "job"), "--model", str(run), "--arch", "vgg15ab")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "'vggab_digits'" in res.stderr and "'vgg15ab'" in res.stderr


@pytest.mark.slow
def test_cli_refuses_a_spiking_checkpoint(tmp_path):
    main(
        get_args_parser().parse_args(
            ["--num_epochs", "1", "--max-batches", "1", "--output-dir", str(tmp_path / "snn"), "--no-progress"]
        )
    )
    res = _convert_cli("--job-dir", str(tmp_path / "job"), "--model", str(tmp_path / "snn"))
    assert res.returncode == 2 and "spiking net 'bntt_digits'" in res.stderr and "bsnn-" in res.stderr


@pytest.mark.slow
def test_cli_loads_a_plain_state_dict_of_the_original_layout(tmp_path):
    """The original code saved ``{'state_dict': ...}`` with DataParallel's ``features.module.`` keys."""
    ann = create_model("vggab_digits")
    state = {k.replace("features.", "features.module."): v for k, v in ann.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "orig.pth.tar")
    res = _convert_cli(
        "--job-dir",
        str(tmp_path / "job"),
        "--model",
        str(tmp_path / "orig.pth.tar"),
        "--time",
        "3",
        "--eval_size",
        "10",
        "--norm",
        "50",
        "--percentile",
        "100",
    )
    assert "--arch and --dataset" in res.stderr and res.returncode == 2
    res = _convert_cli(
        "--job-dir",
        str(tmp_path / "job"),
        "--model",
        str(tmp_path / "orig.pth.tar"),
        "--time",
        "3",
        "--eval_size",
        "10",
        "--norm",
        "50",
        "--percentile",
        "100",
        "--arch",
        "vggab_digits",
        "--dataset",
        "digits",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "job" / "summary.json").read_text())["norm_images"] == 50


def test_imagenet_image_folder_layout(tmp_path):
    write_imagenet(tmp_path)
    train, val, info = build_datasets("imagenet", tmp_path)
    assert info.num_classes == 1000 and len(train) == 4 and len(val) == 4
    image, label = val[3]
    assert image.shape == (3, 224, 224) and label == 1
    from bntt_snntorch.data import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match=r"imagenet[/\\]train"):
        build_datasets("imagenet", tmp_path / "nowhere")
