"""The rate-vs-direct work: its models, recipe, attacks and the comparison command."""

import csv
import math

import pytest
import torch

from bntt_snntorch.analysis.robustness import PixelBox, differentiable_encoder, fgsm, pgd
from bntt_snntorch.commands.train import config_from_args, get_args_parser
from bntt_snntorch.data import build_datasets, dataset_info
from bntt_snntorch.models import create_model

from .fake_data import write_mnist

MEAN, STD = (0.3,), (0.4,)


def _batch():
    g = torch.Generator().manual_seed(1)
    pixels = torch.rand(16, 1, 8, 8, generator=g)
    return (pixels - MEAN[0]) / STD[0], torch.randint(0, 10, (16,), generator=g)


def _trained_like_model(coding="d"):
    """The work's MLP on 8x8 inputs, fitted for 30 Adam steps to the test batch (the VGGs are silent at
    initialisation on 8x8 single-channel input: conv1's fan-in of 9 gives currents far below threshold)."""
    torch.manual_seed(0)
    model = create_model("rvd_mlp", num_steps=4, in_channels=1, image_size=8)
    x, y = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    encode = differentiable_encoder(coding, 4, torch.Generator().manual_seed(2))
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(encode(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _loss(model, x, y, encode):
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(encode(x)), y).item()


def test_membrane_placement_and_gains():
    lam = 0.7
    vgg5, vgg9 = create_model("rvd_vgg5", leak_mem=lam), create_model("rvd_vgg9", leak_mem=lam)
    b5, b9 = vgg5.features[0], vgg9.features[0]
    assert float(b5.neuron.beta) == pytest.approx(lam) and b5.input_scale == pytest.approx(1 - lam)
    assert float(b9.neuron.beta) == pytest.approx(1 - lam) and b9.input_scale == pytest.approx(lam)
    assert b5.norm is None
    assert all(m.bias is None for m in vgg5.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    for name, encode, gain in [("rvd_vgg5", "d", 3), ("rvd_vgg5", "p", 4), ("rvd_vgg9", None, 5), ("rvd_mlp", None, 2)]:
        model = create_model(name, **({"encode": encode} if encode else {}))
        w = model.classifier.weight
        bound = gain * math.sqrt(6 / sum(w.shape))
        assert bound * 0.9 < w.abs().max() <= bound


def test_only_vgg5_takes_the_coding():
    """Model facts are registry metadata: only rvd_vgg5's init depends on the coding."""
    from bntt_snntorch.models import model_info

    assert [n for n in ("rvd_mlp", "rvd_vgg5", "rvd_vgg9") if model_info(n).takes_encoding] == ["rvd_vgg5"]
    with pytest.raises(TypeError):
        create_model("rvd_vgg9", encode="p")


def test_update_rule_of_vgg5_block():
    """One block of rvd_vgg5, by hand: U = lam U + (1 - lam) I, spike at U > 1, soft reset."""
    lam = 0.5
    block = create_model("rvd_vgg5", leak_mem=lam, in_channels=1, image_size=8).features[0]
    x = (torch.rand(5, 2, 1, 8, 8) > 0.5).float()
    spikes = block(x)
    U, expected = torch.zeros(2, 64, 8, 8), []
    for t in range(5):
        U = lam * U + (1 - lam) * block.synapse(x[t])
        s = (U > 1).float()
        U = U - s
        expected.append(s)
    torch.testing.assert_close(spikes, torch.stack(expected))


def test_recipe_selector_runs_the_seed_command_line():
    argv = (
        "--recipe rate-vs-direct --dataset cifar10 --arch vgg5 --encode d --leak_mem 0.5 --T 10 --lr 1e-3 "
        "--batch_size 128"
    )
    cfg = config_from_args(get_args_parser().parse_args(argv.split()))
    assert (cfg.arch, cfg.optimizer, cfg.num_epochs, cfg.encode, cfg.num_steps) == ("rvd_vgg5", "adam", 100, "d", 10)
    assert cfg.lr_milestones == (0.5, 0.7, 0.9) and cfg.leak_mem == 0.5
    assert config_from_args(get_args_parser().parse_args(["--arch", "vgg9"])).arch == "vgg9"  # BNTT's VGG9 by default


def test_fgsm_with_zero_eps_changes_nothing():
    model, (x, y) = _trained_like_model(), _batch()
    box = PixelBox(MEAN, STD)
    assert torch.equal(fgsm(model, x, y, 0.0, differentiable_encoder("d", 4), box), x)


@pytest.mark.parametrize("coding", ["d", "p"])
def test_attacks_raise_the_loss_and_stay_in_the_ball_and_range(coding):
    model, (x, y) = _trained_like_model(coding), _batch()
    box = PixelBox(MEAN, STD)
    gen = torch.Generator().manual_seed(0)
    encode = differentiable_encoder(coding, 4, gen)
    eval_encode = differentiable_encoder(coding, 4, torch.Generator().manual_seed(9)) if coding == "p" else encode
    eps = 0.1
    clean = _loss(model, x, y, eval_encode)
    for x_adv in (
        fgsm(model, x, y, eps, encode, box, draws=4),
        pgd(model, x, y, eps, encode, box, iterations=5, draws=4, generator=gen),
    ):
        pixel_change = ((x_adv - x) * STD[0]).abs()
        assert pixel_change.max() <= eps + 1e-6
        assert x_adv.min() >= box.low.min() - 1e-6 and x_adv.max() <= box.high.max() + 1e-6
        eval_encode = differentiable_encoder(coding, 4, torch.Generator().manual_seed(9)) if coding == "p" else encode
        assert _loss(model, x_adv, y, eval_encode) > clean


def test_poisson_encoder_passes_the_gradient_of_its_expectation():
    x = torch.tensor([[-3.0, -1.0, 0.5, 1.5, 2.5]], requires_grad=True)
    spikes = differentiable_encoder("p", 6, torch.Generator().manual_seed(0))(x)
    assert set(spikes.detach().unique().tolist()) <= {-1.0, 0.0, 1.0}
    spikes.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.0, 3.0, 3.0, 3.0, 0.0]]))  # 6 steps x 1/2 inside |x| < 2


def test_mnist_real_idx_files(tmp_path):
    write_mnist(tmp_path)
    train, test, info = build_datasets("mnist", tmp_path)
    assert len(train) == len(test) == 20 and train[0][0].shape == (1, 28, 28)
    assert info.mean == (0.1307,) and dataset_info("digits").std[0] > 0


def test_compare_coding_command(tmp_path):
    from bntt_snntorch.commands.compare_coding import run as main

    assert (
        main(
            [
                "--T",
                "2",
                "--num_epochs",
                "1",
                "--eps",
                "0.05",
                "--pgd-iterations",
                "2",
                "--draws",
                "1",
                "--max-batches",
                "1",
                "--output-dir",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "comparison.csv")))
    assert [r["coding"] for r in rows] == ["rate (Poisson)", "direct"]
    assert {"clean_acc", "fgsm_0.05", "pgd_0.05", "spike_rate", "snn_energy_uj"} <= set(rows[0])
    assert (tmp_path / "accuracy_vs_T.png").is_file() and (tmp_path / "accuracy_vs_eps.png").is_file()
    assert (tmp_path / "p-T2" / "best.pt").is_file()
