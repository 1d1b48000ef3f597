"""``train.py``: the BNTT seed's command line, on any registered model and data set.

``get_args_parser()`` builds the parser, ``main(args)`` runs training and
returns the final metrics, ``run(argv)`` is the console entry point that turns
user errors into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import encoding
from .checkpoint import atomic_write, save_checkpoint
from .data import DatasetNotFoundError, build_datasets, list_datasets
from .engine import evaluate, train_one_epoch
from .models import create_model, list_models
from .plots import plot_training_curves
from .recipes import RECIPES, recipe_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "samples_per_s"]


class ConfigError(ValueError):
    """A flag combination that cannot run; the message says what to change."""


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def get_args_parser() -> argparse.ArgumentParser:
    """The parser; flags left unset (None) are filled from the recipe."""
    p = argparse.ArgumentParser(
        description="Train a BNTT spiking network. With no flags: a small BNTT net on sklearn's digits, offline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("BNTT seed flags")
    g.add_argument("--num_steps", "--num-steps", "--T", dest="num_steps", type=_positive(int), help="time steps T")
    g.add_argument("--lr", type=_positive(float), help="initial learning rate")
    g.add_argument("--arch", choices=list_models(), help="model name")
    g.add_argument("--dataset", choices=list_datasets(), default="digits", help="data set")
    g.add_argument("--batch_size", "--batch-size", dest="batch_size", type=_positive(int), help="images per batch")
    g.add_argument("--leak_mem", "--leak-mem", dest="leak_mem", type=float, help="membrane leak (beta) in [0, 1]")
    g.add_argument("--num_workers", "--num-workers", dest="num_workers", type=int, help="data-loading processes")
    g.add_argument("--num_epochs", "--num-epochs", dest="num_epochs", type=_positive(int), help="epochs")
    g.add_argument("--encode", choices=["p", "d"], help="input coding: p = signed Poisson rate, d = direct")
    g = p.add_argument_group("run")
    g.add_argument("--recipe", choices=sorted(RECIPES), help="hyper-parameter set (default: by data set)")
    g.add_argument("--data-dir", "--data_dir", dest="data_dir", default=str(PROJECT_ROOT / "datasets"), help="data root")
    g.add_argument("--download", action="store_true", help="let torchvision download the data set if missing")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--output-dir", "--output_dir", dest="output_dir", help="run folder (default runs/<dataset>-<arch>-<time>)")
    g.add_argument("--max-batches", "--max_batches", dest="max_batches", type=_positive(int), help="batches per epoch (short runs)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="hide the tqdm bars")
    g = p.add_argument_group("speed")
    g.add_argument("--amp", nargs="?", const="bf16", choices=["bf16", "fp16"],
                   help="mixed precision: bfloat16 autocast (CPU or GPU), or fp16 with a GradScaler (CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (first batches are slow)")
    g.add_argument("--channels-last", "--channels_last", dest="channels_last", action="store_true",
                   help="channels_last memory format for the convolutions")
    return p


@dataclass
class TrainConfig:
    arch: str
    dataset: str
    num_steps: int
    lr: float
    batch_size: int
    leak_mem: float
    num_workers: int
    num_epochs: int
    encode: str
    optimizer: str
    momentum: float
    weight_decay: float
    lr_milestones: tuple
    data_dir: str
    device: str
    seed: int
    output_dir: str
    download: bool
    max_batches: int | None
    recipe: str | None
    progress: bool
    amp: str | None
    compile: bool
    channels_last: bool


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Fill unset flags from the recipe and validate, before any data is touched."""
    recipe = recipe_for(args.dataset, args.recipe)
    values = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    for key, default in recipe.items():
        if values.get(key) is None:
            values[key] = default
    if not 0.0 <= values["leak_mem"] <= 1.0:
        raise ConfigError(f"--leak_mem must be in [0, 1], got {values['leak_mem']}")
    if values["num_workers"] < 0:
        raise ConfigError(f"--num_workers must be >= 0, got {values['num_workers']}")
    values["device"] = str(resolve_device(values["device"]))
    if values["amp"] == "fp16" and not values["device"].startswith("cuda"):
        raise ConfigError("--amp fp16 needs a CUDA device (it uses a GradScaler); on CPU use --amp bf16")
    if values["output_dir"] is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        values["output_dir"] = str(PROJECT_ROOT / "runs" / f"{values['dataset']}-{values['arch']}-{stamp}")
    values["lr_milestones"] = tuple(values["lr_milestones"])
    return TrainConfig(**values)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for a GPU but torch sees none; use --device cpu or auto")
    return device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _write_metrics(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def main(args: argparse.Namespace) -> dict:
    """Train as configured by ``args``; returns the final metrics (also printed)."""
    cfg = resolve_config(args)
    _seed_everything(cfg.seed)
    device = torch.device(cfg.device)
    train_set, test_set, info = build_datasets(cfg.dataset, cfg.data_dir, cfg.download)
    model = create_model(
        cfg.arch, num_classes=info.num_classes, num_steps=cfg.num_steps, leak_mem=cfg.leak_mem,
        in_channels=info.in_channels, image_size=info.image_size,
    ).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    milestones = sorted({max(1, int(f * cfg.num_epochs)) for f in cfg.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)

    loader_kwargs = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    train_loader = DataLoader(
        train_set, shuffle=True, drop_last=len(train_set) > cfg.batch_size,
        generator=torch.Generator().manual_seed(cfg.seed), **loader_kwargs,
    )
    test_loader = DataLoader(test_set, shuffle=False, **loader_kwargs)
    train_gen = torch.Generator(device).manual_seed(cfg.seed)
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
    step_model = torch.compile(model, dynamic=False) if cfg.compile else model
    speed = dict(amp=cfg.amp, memory_format=memory_format)

    def train_encode(x):
        return encoding.encode(x, cfg.num_steps, cfg.encode, train_gen)

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_json = {**asdict(cfg), "git_commit": _git_commit(), "torch": torch.__version__, "command": sys.argv}
    atomic_write(out / "config.json", lambda f: f.write(json.dumps(config_json, indent=2).encode()))

    rows: list[dict] = []
    best_acc, best_epoch, train_seconds = -1.0, 0, 0.0
    for epoch in range(1, cfg.num_epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(step_model, train_loader, optimizer, train_encode, device, cfg.max_batches,
                             f"epoch {epoch}/{cfg.num_epochs}", cfg.progress, scaler=scaler, **speed)
        eval_gen = torch.Generator(device).manual_seed(cfg.seed + 1)
        te = evaluate(step_model, test_loader, lambda x: encoding.encode(x, cfg.num_steps, cfg.encode, eval_gen),
                      device, cfg.max_batches, "test", cfg.progress, **speed)
        scheduler.step()
        train_seconds += tr.seconds
        rows.append(dict(epoch=epoch, lr=lr, train_loss=tr.loss, train_acc=tr.accuracy, test_loss=te.loss,
                         test_acc=te.accuracy, epoch_seconds=tr.seconds + te.seconds, samples_per_s=tr.samples_per_s))
        _write_metrics(rows, out / "metrics.csv")
        plot_training_curves(rows, out / "curves.png")
        state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                     scaler=None if scaler is None else scaler.state_dict(), epoch=epoch, config=asdict(cfg),
                     metrics=rows[-1])
        save_checkpoint(state, out / "last.pt")
        if te.accuracy > best_acc:
            best_acc, best_epoch = te.accuracy, epoch
            save_checkpoint(state, out / "best.pt")
        if cfg.progress:
            print(f"epoch {epoch:3d}  lr {lr:.2e}  train loss {tr.loss:.4f} acc {100 * tr.accuracy:.2f}%  "
                  f"test loss {te.loss:.4f} acc {100 * te.accuracy:.2f}%  {tr.samples_per_s:.0f} img/s", flush=True)

    final = dict(test_acc=rows[-1]["test_acc"], best_test_acc=best_acc, best_epoch=best_epoch,
                 train_seconds=train_seconds, output_dir=str(out))
    print(f"final test accuracy {100 * final['test_acc']:.2f}% (best {100 * best_acc:.2f}% at epoch {best_epoch}); "
          f"training time {train_seconds:.1f} s on {device}; results in {out}")
    return final


def run(argv: list[str] | None = None) -> int:
    """Console entry point: parse, train, and report user errors in one line (exit 2)."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        main(args)
    except (DatasetNotFoundError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"error: training diverged: {err}", file=sys.stderr)
        return 1
    return 0
