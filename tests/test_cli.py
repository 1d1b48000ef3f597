"""train.py end to end: outputs, the seed command lines, the offline default's accuracy, bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bntt_snntorch.commands.train import config_from_args, get_args_parser, main, run
from bntt_snntorch.kernels.auto_choice import Measurement

from .fake_data import write_cifar10, write_tiny_imagenet

ROOT = Path(__file__).resolve().parent.parent
SEED_VGG9 = (
    "--num_steps 25 --lr 0.3 --arch vgg9 --dataset cifar10 --batch_size 256 --leak_mem 0.95 --num_workers 4 "
    "--num_epochs 100"
)
SEED_VGG11 = (
    "--num_steps 30 --lr 0.3 --arch vgg11 --dataset cifar100 --batch_size 128 --leak_mem 0.99 --num_workers 4 "
    "--num_epochs 100"
)


def _train(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, "train.py", *argv], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_short_digits_run_writes_all_outputs(tmp_path):
    args = get_args_parser().parse_args(
        ["--num_epochs", "2", "--max-batches", "3", "--output-dir", str(tmp_path), "--no-progress"]
    )
    final = main(args)
    for name in ("config.json", "metrics.csv", "last.pt", "best.pt", "curves.png"):
        assert (tmp_path / name).is_file(), name
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "epoch_seconds",
        "samples_per_s",
    ]
    config = json.load(open(tmp_path / "config.json"))
    assert config["arch"] == "bntt_digits" and config["num_steps"] == 10
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 6 and ckpt["progress"]["batches"] == 0  # next epoch to run
    assert {"optimizer", "scheduler", "rng", "poisson_generator", "rows"} <= set(ckpt)
    assert final.test_acc == float(rows[-1]["test_acc"]) and len(final.rows) == 2
    assert final.best_checkpoint == tmp_path / "best.pt" and final.last_checkpoint == tmp_path / "last.pt"


@pytest.mark.slow
def test_default_command_reaches_98_5_percent(tmp_path):
    """The README's promise, as a new user meets it: `python train.py` on a fresh clone (no BNTT_ variable, an empty
    kernel cache: auto measures each layer and builds the C loops it takes) ends near 99 % on digits, printing
    nothing on stderr but what the run reports. Seed 0 ends at 98.89-99.44 % on the C loops and the eager steps
    with AVX-512 and AVX2 kernels on one machine, one image being 0.28 %: 98.5 % leaves a CPU that rounds
    otherwise an image."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNTT_")}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "cache")  # a fresh machine's: nothing measured or built
    result = subprocess.run([sys.executable, "train.py", "--output-dir", str(tmp_path / "run"), "--no-progress"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.strip() == "", result.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["test_acc"]) >= 0.985, rows[-1]
    assert "final test accuracy" in result.stdout
    choices = json.loads(next((tmp_path / "cache").glob("bntt_snntorch_kernel_choices.json")).read_text())
    assert {Measurement(**m).path for m in choices.values()} <= {"bntt-c", "bntt-eager"} and len(choices) >= 3


@pytest.mark.parametrize(
    "argv,expected", [(SEED_VGG9, (25, 0.3, "vgg9", 256, 0.95, 100)), (SEED_VGG11, (30, 0.3, "vgg11", 128, 0.99, 100))]
)
def test_seed_command_lines_parse_unchanged(argv, expected):
    cfg = config_from_args(get_args_parser().parse_args(argv.split()))
    assert (cfg.num_steps, cfg.lr, cfg.arch, cfg.batch_size, cfg.leak_mem, cfg.num_epochs) == expected
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.encode) == ("sgd", 0.9, 1e-4, "p")
    assert cfg.lr_milestones == (0.5, 0.7, 0.9) and cfg.num_workers == 4


def test_seed_command_trains_on_cifar10_files(tmp_path):
    write_cifar10(tmp_path / "data")
    argv = SEED_VGG9.replace("--num_steps 25", "--num_steps 2").replace("--num_epochs 100", "--num_epochs 1")
    argv = argv.replace("--batch_size 256", "--batch_size 4").replace("--num_workers 4", "--num_workers 0").split()
    final = main(
        get_args_parser().parse_args(
            argv
            + [
                "--data-dir",
                str(tmp_path / "data"),
                "--max-batches",
                "2",
                "--output-dir",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
    )
    assert final.best_checkpoint.is_file() and final.rows[-1]["test_acc"] == final.test_acc
    assert final.model.num_steps == 2 and final.model.classifier.out_features == 10


def test_tiny_imagenet_trains(tmp_path):
    write_tiny_imagenet(tmp_path / "data")
    final = main(
        get_args_parser().parse_args(
            [
                "--dataset",
                "tiny-imagenet",
                "--arch",
                "vgg9",
                "--num_steps",
                "2",
                "--batch_size",
                "3",
                "--num_epochs",
                "1",
                "--num_workers",
                "0",
                "--data-dir",
                str(tmp_path / "data"),
                "--output-dir",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
    )
    assert final.model.classifier.out_features == 200 and len(final.rows) == 1


@pytest.mark.slow
def test_missing_dataset_is_one_line_without_traceback(tmp_path):
    result = _train("--dataset", "cifar10", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert str(tmp_path / "cifar-10-batches-py") in lines[0] and "--download" in lines[0]
    assert not (tmp_path / "run").exists(), "nothing is written before the data is found"


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--arch", "resnet18"], "invalid choice: 'resnet18' (choose from"),
        (["--dataset", "imagenet21k"], "invalid choice: 'imagenet21k' (choose from"),
        (["--num_steps", "0"], "must be positive, got 0"),
        (["--batch_size", "-4"], "must be positive, got -4"),
        (["--lr", "0"], "must be positive, got 0"),
        (["--leak_mem", "1.5"], "--leak-mem must be in [0, 1], got 1.5"),
        (["--num_workers", "-1"], "--num-workers must be >= 0, got -1"),
        (["--seed", "-3"], "--seed must be >= 0 (it seeds numpy's generators too), got -3"),
        pytest.param(
            ["--device", "cuda:7"],
            "--device cuda:7 asked for a GPU but torch sees none",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
    ],
)
def test_bad_flags_rejected_before_loading(argv, needle, tmp_path, capsys):
    """train.py's entry point in-process (the subprocess tests above show it prints no traceback)."""
    try:
        status = run([*argv, "--output-dir", str(tmp_path / "run")])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse prints its usage above the error line
    assert needle in last and last.startswith(("error: ", "train.py: error: ")) and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_amp_and_channels_last_run(tmp_path):
    final = main(
        get_args_parser().parse_args(
            [
                "--num_epochs",
                "1",
                "--max-batches",
                "2",
                "--amp",
                "--channels-last",
                "--output-dir",
                str(tmp_path),
                "--no-progress",
            ]
        )
    )
    assert json.load(open(tmp_path / "config.json"))["amp"] == "bf16"
    assert final.rows[0]["epoch"] == 1 and final.model.features[0].synapse.weight.dtype == torch.float32


@pytest.mark.slow
def test_fp16_amp_needs_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = _train("--amp", "fp16", "--device", "cpu", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "--amp fp16 needs a CUDA device" in result.stderr
