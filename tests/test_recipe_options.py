"""The recipe's options beyond the seed's: a cosine schedule, label smoothing, the digits' one-pixel shifts,
and ``augment``'s earlier name."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bntt_snntorch import TrainConfig
from bntt_snntorch.commands.train import config_from_args, get_args_parser
from bntt_snntorch.data.registry import DataOptions
from bntt_snntorch.data.static import _digits_stats, digits
from bntt_snntorch.training import loop
from bntt_snntorch.training.config import ConfigError
from bntt_snntorch.training.online import online_backward
from bntt_snntorch.training.trainer import build_optimizer


def _config(**overrides) -> TrainConfig:
    return TrainConfig.from_recipe(None, dataset="digits", device="cpu", output_dir="unused", **overrides)


def test_cosine_schedule_goes_from_lr_to_zero_over_the_epochs():
    cfg = _config(lr_scheduler="cosine", num_epochs=7, lr=0.2)
    optimizer, scheduler = build_optimizer(cfg, nn.Linear(3, 2))
    seen = []
    for _ in range(cfg.num_epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.1 * (1 + math.cos(math.pi * e / 7)) for e in range(7)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_step_schedule_is_still_the_default():
    cfg = TrainConfig.from_recipe("bntt", dataset="digits", device="cpu", output_dir="unused", num_epochs=10)
    assert cfg.lr_scheduler == "step"
    optimizer, scheduler = build_optimizer(cfg, nn.Linear(3, 2))
    assert isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_the_training_loss_has_the_label_smoothing_asked_for(smoothing):
    torch.manual_seed(0)
    images, labels = torch.randn(12, 5), torch.randint(0, 4, (12,))
    model = nn.Linear(5, 4)
    expected = F.cross_entropy(model(images), labels, label_smoothing=smoothing).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = DataLoader(TensorDataset(images, labels), batch_size=12)
    options = loop.LoopOptions(progress=False, label_smoothing=smoothing)
    result = loop.train_one_epoch(model, loader, optimizer, lambda x: x, options)
    assert result.loss == pytest.approx(expected, rel=1e-6)


def test_online_rules_smooth_each_steps_loss():
    from bntt_snntorch import create_model

    torch.manual_seed(1)
    net = create_model("bntt_digits", num_steps=3, leak_mem=0.9)
    x_seq, labels = torch.randn(3, 6, 1, 8, 8), torch.randint(0, 10, (6,))
    net.train()
    plain_loss, _ = online_backward(net, x_seq, labels, "sltt")
    net.zero_grad()
    smooth_loss, _ = online_backward(net, x_seq, labels, "sltt", label_smoothing=0.2)
    assert smooth_loss.item() != pytest.approx(plain_loss.item(), rel=1e-3)
    net.zero_grad()
    # the smoothed loss of each step's readout, summed over the steps / T, from a one-step-a-call run
    per_step, _ = online_backward(net, x_seq, labels, "sltt", backprop_steps=2, label_smoothing=0.2)
    assert per_step.item() == pytest.approx(smooth_loss.item(), rel=1e-5)


def _shifted(image: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    padded = F.pad(image, (1, 1, 1, 1), value=fill)
    return padded[:, 1 + dy : 9 + dy, 1 + dx : 9 + dx]


def test_digits_translate_shifts_each_training_image_by_at_most_a_pixel():
    plain_train, plain_test = digits(None)
    train, test = digits(None, options=DataOptions(augment=("translate",)))
    mean, std = _digits_stats()
    fill = -mean / std  # a zero pixel, standardised
    torch.manual_seed(0)
    shifts = set()
    for index in range(40):
        image, label = train[index]
        original, original_label = plain_train[index]
        assert label == original_label and image.shape == (1, 8, 8)
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if torch.equal(image, _shifted(original, dy, dx, fill))]  # fmt: skip
        assert matches, f"image {index} is not a shift of its original by at most one pixel"
        shifts.update(matches)
    assert len(shifts) >= 5  # the shifts are drawn, not one fixed offset
    assert all(torch.equal(a[0], b[0]) for a, b in zip(test, plain_test))  # the test set is never augmented


def test_digits_shifts_depend_only_on_seed_epoch_and_index():
    """A resumed run draws skipped batches again, another world size groups images otherwise: an image's
    shift must not depend on either, nor on torch's global generator."""
    options = DataOptions(augment=("translate",), seed=3)
    train, _ = digits(None, options=options)
    again, _ = digits(None, options=options)
    order = [5, 3, 9, 0, 11, 7, 2]
    one_by_one = [train[i][0] for i in order]
    torch.manual_seed(123)
    torch.rand(1000)  # the global generator moves: nothing changes
    for batch_size in (1, 3, 7):
        loader = DataLoader(again, batch_size=batch_size, sampler=order)
        batched = [image for images, _ in loader for image in images]
        assert all(torch.equal(a, b) for a, b in zip(one_by_one, batched, strict=True))
    labels = torch.cat([labels for _, labels in DataLoader(train, batch_size=4, sampler=order)])
    assert labels.tolist() == [int(digits(None)[0][i][1]) for i in order]
    train.set_epoch(1)
    next_epoch = [train[i][0] for i in range(40)]
    other_seed, _ = digits(None, options=DataOptions(augment=("translate",), seed=4))
    first = [again[i][0] for i in range(40)]
    assert any(not torch.equal(a, b) for a, b in zip(first, next_epoch))
    assert any(not torch.equal(a, other_seed[i][0]) for i, a in enumerate(first))


def test_shifted_images_says_what_shapes_it_wants():
    from bntt_snntorch.data.static import ShiftedImages

    with pytest.raises(ValueError, match=r"images \(N, C, H, W\) and labels \(N,\), got \(4, 8, 8\)"):
        ShiftedImages(torch.zeros(4, 8, 8), torch.zeros(4))


def test_digits_cannot_be_flipped():
    with pytest.raises(ConfigError, match="--augment translate"):
        _config(augment=("flip",))


@pytest.mark.parametrize("flag", ["--augment", "--dvs-augment", "--dvs_augment"])
def test_augment_keeps_its_earlier_spellings(flag):
    cfg = config_from_args(get_args_parser().parse_args(["--dataset", "digits-dvs", flag, "flip", "--device", "cpu"]))
    assert cfg.augment == ("flip",) and cfg.dvs_augment == ("flip",)


def test_configs_saved_with_the_earlier_field_name_load():
    saved = _config().to_dict()
    saved["dvs_augment"] = saved.pop("augment")
    saved["dvs_augment"] = ["translate"]
    assert TrainConfig.from_dict(saved).augment == ("translate",)
    assert _config(dvs_augment=("translate",)).augment == ("translate",)


def _flags(*argv: str) -> TrainConfig:
    return config_from_args(get_args_parser().parse_args([*argv, "--device", "cpu", "--output-dir", "unused"]))


@pytest.mark.parametrize("wd_flag", ["--weight-decay", "--wd", "--weight_decay"])
def test_optimiser_flags_override_the_recipe_and_reach_the_optimiser(wd_flag):
    """--optimizer / --momentum / --weight-decay (torchvision's spellings --opt and --wd too); unset: the recipe's."""
    recipe = _flags()
    assert (recipe.optimizer, recipe.momentum, recipe.weight_decay) == ("sgd", 0.9, 1e-4)
    cfg = _flags("--momentum", "0.5", wd_flag, "5e-4")
    sgd, _ = build_optimizer(cfg, nn.Linear(2, 2))
    assert type(sgd) is torch.optim.SGD
    assert (sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.5, 5e-4)
    adam, _ = build_optimizer(_flags("--opt", "adam", "--lr", "1e-3"), nn.Linear(2, 2))
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 1e-4


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_optimiser_steps_all_parameters_at_once_to_the_same_values(optimizer):
    """build_optimizer's optimizers update every parameter with one op per step of the rule (foreach), bit for
    bit what torch's per-parameter loop computes, over a few steps of a BNTT model (fresh random data)."""
    from bntt_snntorch import create_model

    cfg = _flags("--opt", optimizer, "--lr", "0.05", "--wd", "5e-4")
    torch.manual_seed(0)
    model = create_model("bntt_digits", num_steps=3, num_classes=10)
    twin = copy.deepcopy(model)
    built, _ = build_optimizer(cfg, model)
    kind = type(built)
    loop_opt = kind(twin.parameters(), **{**built.defaults, "foreach": False})
    assert built.defaults["foreach"] and len(built.param_groups[0]["params"]) == 5 * 3 + 6  # a gamma a block and step
    start = copy.deepcopy(model.state_dict())
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(3, 4, 1, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)
        for m, opt in ((model, built), (twin, loop_opt)):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(model.classifier.weight, start["classifier.weight"])  # it trained


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(lr_scheduler="linear"), "--lr-scheduler"),
        (dict(label_smoothing=1.0), "--label-smoothing"),
        (dict(weight_decay=-1e-4), "--weight-decay must be >= 0"),
        (dict(momentum=1.5), "--momentum must be in"),
    ],
)
def test_bad_schedule_or_smoothing_is_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _config(**overrides)


def test_the_digits_default_codes_directly_with_label_smoothing_and_shifts_and_the_previous_one_stays_by_name():
    """``python train.py``: direct coding, label smoothing 0.1, one-pixel shifts, batch 32 for 20 epochs;
    ``--recipe digits-poisson`` is the previous default (the seed's Poisson input, no smoothing, no shifts,
    batch 64 for 30 epochs), every other field the same; digits-dvs keeps no smoothing, batch 64, 30 epochs."""
    args = get_args_parser().parse_args([])
    now = config_from_args(args)
    assert (now.encode, now.label_smoothing, now.augment) == ("d", 0.1, ("translate",))
    assert (now.batch_size, now.num_epochs) == (32, 20)
    before = config_from_args(get_args_parser().parse_args(["--recipe", "digits-poisson"]))
    assert (before.encode, before.label_smoothing, before.augment) == ("p", 0.0, ())
    assert (before.batch_size, before.num_epochs) == (64, 30)
    changed = ("encode", "label_smoothing", "augment", "batch_size", "num_epochs", "recipe", "output_dir")
    same = {k: v for k, v in now.to_dict().items() if k not in changed}
    assert same == {k: v for k, v in before.to_dict().items() if k not in changed}
    dvs = TrainConfig.from_recipe(None, dataset="digits-dvs")
    assert (dvs.label_smoothing, dvs.batch_size, dvs.num_epochs) == (0.0, 64, 30)
