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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import encoding
from .analyze import add_analysis_args, analyze
from .analysis import count_operations, gamma_curves
from .checkpoint import atomic_write, load_latest_good, previous_path, rng_state, save_checkpoint, set_rng_state
from .data import CorruptRecordingError, DatasetNotFoundError, dataset_info, list_datasets
from .distributed import all_reduce_sum, barrier, gather_generator_states, init_from_env, is_main, sync_batchnorm_tt
from .engine import EpochProgress, evaluate, train_one_epoch
from .models import SpikingNet, is_ann, list_models
from .plots import plot_training_curves
from .recipes import RECIPES, recipe_for
from .runs import CheckpointError, build_model, run_datasets
from .utils import tune_cpu_allocator

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
        description="Train a BNTT spiking network. With no flags: a small BNTT net on sklearn's digits, offline. "
                    "'train.py convert --help': convert a trained ANN (bsnn-* recipes) to an SNN.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("BNTT seed flags")
    g.add_argument("--num_steps", "--num-steps", "--T", dest="num_steps", type=_positive(int), help="time steps T")
    g.add_argument("--lr", type=_positive(float), help="initial learning rate")
    g.add_argument("--arch", choices=sorted({*list_models(), *RECIPES["rate-vs-direct"]["arch_names"]}),
                   help="model name (mlp / vgg5 / vgg9 with --recipe rate-vs-direct: that work's nets)")
    g.add_argument("--dataset", choices=list_datasets(), default="digits", help="data set")
    g.add_argument("--batch_size", "--batch-size", dest="batch_size", type=_positive(int), help="images per batch")
    g.add_argument("--leak_mem", "--leak-mem", dest="leak_mem", type=float, help="membrane leak (beta) in [0, 1]")
    g.add_argument("--num_workers", "--num-workers", dest="num_workers", type=int, help="data-loading processes")
    g.add_argument("--num_epochs", "--num-epochs", dest="num_epochs", type=_positive(int), help="epochs")
    g.add_argument("--encode", choices=["p", "d", "none"],
                   help="input coding: p = signed Poisson rate, d = direct, none = images as they are (ANNs to convert)")
    g = p.add_argument_group("event data (cifar10-dvs, digits-dvs)")
    g.add_argument("--dvs-size", "--dvs_size", dest="dvs_size", type=_positive(int),
                   help="frame size: events are downsampled to SIZE x SIZE (recipe bntt-dvs: 64; default the sensor's)")
    g.add_argument("--dvs-augment", "--dvs_augment", dest="dvs_augment", choices=["none", "flip", "translate", "both"],
                   help="training augmentation of the event frames (recipes: both)")
    g.add_argument("--skip-corrupt", "--skip_corrupt", dest="skip_corrupt", action="store_true", default=None,
                   help="leave out recordings that cannot be decoded (with a warning) instead of stopping")
    g = p.add_argument_group("run")
    g.add_argument("--recipe", choices=sorted(RECIPES), help="hyper-parameter set (default: by data set)")
    g.add_argument("--data-dir", "--data_dir", dest="data_dir", default=str(PROJECT_ROOT / "datasets"), help="data root")
    g.add_argument("--download", action="store_true", help="let torchvision download the data set if missing")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--output-dir", "--output_dir", dest="output_dir", help="run folder (default runs/<dataset>-<arch>-<time>)")
    g.add_argument("--max-batches", "--max_batches", dest="max_batches", type=_positive(int), help="batches per epoch (short runs)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="hide the tqdm bars")
    g.add_argument("--resume", metavar="PATH|auto",
                   help="continue from a checkpoint (auto: <output-dir>/last.pt if it exists)")
    g.add_argument("--save-every", "--save_every", dest="save_every", type=_positive(int),
                   help="also checkpoint every N training steps (mid-epoch)")
    g.add_argument("--tensorboard", action="store_true", help="log to <output-dir>/tensorboard")
    g.add_argument("--evaluate", metavar="RUN_OR_CHECKPOINT",
                   help="analyse a trained run instead of training (see python -m bntt_snntorch.analyze --help)")
    g = p.add_argument_group("speed")
    g.add_argument("--amp", nargs="?", const="bf16", choices=["bf16", "fp16"],
                   help="mixed precision: bfloat16 autocast (CPU or GPU), or fp16 with a GradScaler (CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (first batches are slow)")
    g.add_argument("--channels-last", "--channels_last", dest="channels_last", action="store_true",
                   help="channels_last memory format for the convolutions")
    add_analysis_args(p, positional=False)
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
    save_every: int | None
    adam_betas: tuple | None = None  # recipe-only settings; None: (0.9, 0.999)
    lr_gamma: float | None = None  # lr factor at each milestone / step; None: 0.1
    lr_step: int | None = None  # decay every N epochs instead of at lr_milestones
    weight_decay_until: int | None = None  # weight decay 0 after this epoch
    dvs_size: int | None = None  # event data: frame size (None: the sensor's)
    dvs_augment: tuple | None = None  # event data: ("flip", "translate") or a part of it
    skip_corrupt: bool | None = None  # event data: skip unreadable recordings


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Fill unset flags from the recipe and validate, before any data is touched."""
    recipe = recipe_for(args.dataset, args.recipe)
    values = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    augment = values["dvs_augment"]
    if isinstance(augment, str):
        values["dvs_augment"] = {"none": (), "both": ("flip", "translate")}.get(augment, (augment,))
    for key, default in recipe.items():
        if key in values and values[key] is None:
            values[key] = default
    values["arch"] = recipe.get("arch_names", {}).get(values["arch"], values["arch"])
    if dataset_info(values["dataset"]).events:
        if args.encode not in (None, "events"):
            raise ConfigError(f"--dataset {values['dataset']} gives event frames: leave out --encode {args.encode}")
        values["encode"] = "events"
    elif values["encode"] == "events":
        raise ConfigError(f"--recipe {args.recipe} is for event data: use --dataset cifar10-dvs or digits-dvs")
    if values["arch"] not in list_models():
        raise ConfigError(f"--arch {values['arch']} is a net of the rate-vs-direct work: add --recipe rate-vs-direct")
    ann = is_ann(values["arch"])
    if ann != (values["encode"] == "none"):
        raise ConfigError(f"--arch {values['arch']} is an ANN (to convert later): train it with --encode none or a "
                          "bsnn-* --recipe" if ann else f"--encode none gives no time axis; --arch {values['arch']} "
                          "is a spiking net: use --encode p or d")
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
    values["adam_betas"] = tuple(values["adam_betas"] or (0.9, 0.999))
    values["lr_gamma"] = values["lr_gamma"] or 0.1
    values["dvs_augment"] = tuple(values["dvs_augment"] or ())
    values["skip_corrupt"] = bool(values["skip_corrupt"])
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


def _build_model(cfg: TrainConfig, device, memory_format):
    return build_model(asdict(cfg)).to(device).to(memory_format=memory_format)


def _build_optimizer(cfg: TrainConfig, model):
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    if cfg.lr_step:
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, gamma=cfg.lr_gamma)
    milestones = sorted({max(1, int(round(f * cfg.num_epochs))) for f in cfg.lr_milestones})
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.lr_gamma)


def _train_loader(cfg: TrainConfig, train_set, epoch: int, rank: int, world: int, device):
    """The loader of one epoch: its order (and the workers' augmentation seeds) depend only on
    (seed, epoch), so a resumed run draws exactly the same batches. ``--batch_size`` is the
    global batch, split over ``world`` processes."""
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    sampler.set_epoch(epoch)
    per_rank = cfg.batch_size // world
    return DataLoader(train_set, batch_size=per_rank, sampler=sampler, num_workers=cfg.num_workers,
                      drop_last=len(train_set) > cfg.batch_size, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))


def _resume_path(cfg: TrainConfig, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if resume != "auto":
        return Path(resume)
    candidate = Path(cfg.output_dir) / "last.pt"
    return candidate if candidate.exists() or previous_path(candidate).exists() else None


def _layer_stats(model, x_seq) -> list[dict]:
    """Spike rate and mean BNTT gamma of every spiking layer (one batch); none for an ANN."""
    if not isinstance(model, SpikingNet):
        return []
    gammas = {name.rsplit(".norm", 1)[0]: float(c.mean()) for name, c in gamma_curves(model).items()}
    return [{"layer": op.name, "spike_rate": op.output_rate, "mean_gamma": gammas.get(op.name)}
            for op in count_operations(model, x_seq) if op.output_rate is not None]


def main(args: argparse.Namespace) -> dict:
    """Train as configured by ``args``; returns the final metrics (also printed on rank 0)."""
    cfg = resolve_config(args)
    device = torch.device(cfg.device)
    rank, world = init_from_env(device)
    if cfg.batch_size % world:
        raise ConfigError(f"--batch_size {cfg.batch_size} must divide evenly over {world} processes")
    _seed_everything(cfg.seed)
    train_set, test_set, _ = run_datasets(asdict(cfg), download=cfg.download, progress=cfg.progress and is_main())
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = _build_model(cfg, device, memory_format)
    optimizer, scheduler = _build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
    train_gen = torch.Generator(device).manual_seed(cfg.seed * world + rank)
    out = Path(cfg.output_dir)

    rows: list[dict] = []
    best_acc, best_epoch, start_epoch, progress, step = -1.0, 0, 1, EpochProgress(), 0
    resume_from = _resume_path(cfg, getattr(args, "resume", None))
    if resume_from is not None:
        ckpt, used = load_latest_good(resume_from)
        _check_same_run(ckpt["config"], cfg, used)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        rows, best_acc, best_epoch = ckpt["rows"], ckpt["best_acc"], ckpt["best_epoch"]
        start_epoch, progress, step = ckpt["epoch"], EpochProgress(**ckpt["progress"]), ckpt["step"]
        set_rng_state(ckpt["rng"])
        train_gen.set_state(ckpt["poisson_generator"][rank])
        if is_main():
            print(f"resumed from {used}: epoch {start_epoch}, batch {progress.batches}", flush=True)

    if world > 1:
        sync_batchnorm_tt(model)
        train_model = DistributedDataParallel(model)
    else:
        train_model = model
    train_model = torch.compile(train_model, dynamic=False) if cfg.compile else train_model
    speed = dict(amp=cfg.amp, memory_format=memory_format)
    show = cfg.progress and is_main()
    writer = _tensorboard(out) if (getattr(args, "tensorboard", False) and is_main()) else None
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
        config_json = {**asdict(cfg), "git_commit": _git_commit(), "torch": torch.__version__, "command": sys.argv,
                       "world_size": world}
        atomic_write(out / "config.json", lambda f: f.write(json.dumps(config_json, indent=2).encode()))

    def state(epoch: int, epoch_progress: EpochProgress) -> dict:
        """Everything an exact resume needs; ``epoch`` is the epoch to run next (or to finish)."""
        gens = gather_generator_states(train_gen, world)
        return dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=None if scaler is None else scaler.state_dict(), epoch=epoch, step=step,
                    progress=asdict(epoch_progress), rows=rows, best_acc=best_acc, best_epoch=best_epoch,
                    rng=rng_state(), poisson_generator=gens, config=asdict(cfg))

    def save(epoch, epoch_progress, best=False):
        snapshot = state(epoch, epoch_progress)  # every rank joins the generator gather
        if is_main():
            save_checkpoint(snapshot, out / "last.pt", keep_previous=True)
            if best:
                save_checkpoint(snapshot, out / "best.pt")

    def periodic_save(epoch):
        def on_batch_end(p: EpochProgress):
            nonlocal step
            step += 1
            if cfg.save_every and step % cfg.save_every == 0:
                save(epoch, p)
        return on_batch_end

    test_loader = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers)
    for epoch in range(start_epoch, cfg.num_epochs + 1):
        if cfg.weight_decay_until is not None and epoch > cfg.weight_decay_until:
            for group in optimizer.param_groups:
                group["weight_decay"] = 0.0
        lr = optimizer.param_groups[0]["lr"]
        loader = _train_loader(cfg, train_set, epoch, rank, world, device)
        try:
            train_one_epoch(train_model, loader, optimizer, lambda x: encoding.encode(x, cfg.num_steps, cfg.encode, train_gen),
                            device, cfg.max_batches, f"epoch {epoch}/{cfg.num_epochs}", show, scaler=scaler,
                            state=progress, on_batch_end=periodic_save(epoch), **speed)
        except FloatingPointError as err:
            kept = (f"the last good checkpoint is {out / 'last.pt'} (lower --lr and --resume it)" if (out / "last.pt").exists()
                    else "no checkpoint was written yet (lower --lr)")
            raise FloatingPointError(f"{err}; {kept}") from None
        loss_sum, correct, seen = all_reduce_sum([progress.loss_sum, progress.correct, progress.seen], device)
        tr = EpochProgress(progress.batches, loss_sum, int(correct), int(seen), progress.seconds).result()
        eval_gen = torch.Generator(device).manual_seed(cfg.seed + 1)
        eval_encode = lambda x: encoding.encode(x, cfg.num_steps, cfg.encode, eval_gen)  # noqa: E731
        te = evaluate(model, test_loader, eval_encode, device, cfg.max_batches, "test", show, **speed)
        scheduler.step()
        rows.append(dict(epoch=epoch, lr=lr, train_loss=tr.loss, train_acc=tr.accuracy, test_loss=te.loss,
                         test_acc=te.accuracy, epoch_seconds=tr.seconds + te.seconds, samples_per_s=tr.samples_per_s))
        progress = EpochProgress()
        improved = te.accuracy > best_acc
        if improved:
            best_acc, best_epoch = te.accuracy, epoch
        save(epoch + 1, progress, best=improved)
        if is_main():
            _write_metrics(rows, out / "metrics.csv")
            plot_training_curves(rows, out / "curves.png")
            stats = _layer_stats(model, eval_encode(next(iter(test_loader))[0].to(device)))
            _append_layer_stats(out / "layer_stats.csv", epoch, stats)
            if writer is not None:
                _log_tensorboard(writer, rows[-1], stats, model)
            if cfg.progress:
                print(f"epoch {epoch:3d}  lr {lr:.2e}  train loss {tr.loss:.4f} acc {100 * tr.accuracy:.2f}%  "
                      f"test loss {te.loss:.4f} acc {100 * te.accuracy:.2f}%  {tr.samples_per_s:.0f} img/s", flush=True)
        barrier()

    if is_main() and start_epoch > cfg.num_epochs:  # a finished run was resumed: no epoch rewrote it
        _write_metrics(rows, out / "metrics.csv")
    seconds = sum(r["epoch_seconds"] for r in rows)
    final = dict(test_acc=rows[-1]["test_acc"], best_test_acc=best_acc, best_epoch=best_epoch,
                 seconds=seconds, output_dir=str(out))
    if is_main():
        print(f"final test accuracy {100 * final['test_acc']:.2f}% (best {100 * best_acc:.2f}% at epoch {best_epoch}); "
              f"{seconds:.1f} s of training and evaluation on {device} x{world}; results in {out}")
    if writer is not None:
        writer.close()
    return final


def _check_same_run(saved: dict, cfg: TrainConfig, path: Path) -> None:
    for key in ("arch", "dataset", "num_steps", "encode", "batch_size", "num_epochs"):
        if saved[key] != getattr(cfg, key):
            raise ConfigError(f"--resume {path}: the checkpoint has {key}={saved[key]!r}, this run asks for "
                              f"{getattr(cfg, key)!r}; use the same flags or a new --output-dir")


def _append_layer_stats(path: Path, epoch: int, stats: list[dict]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "layer", "spike_rate", "mean_gamma"])
        if new:
            writer.writeheader()
        writer.writerows({"epoch": epoch, **row} for row in stats)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(out / "tensorboard"))


def _log_tensorboard(writer, row: dict, stats: list[dict], model) -> None:
    epoch = row["epoch"]
    for key in ("lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "samples_per_s"):
        writer.add_scalar(key, row[key], epoch)
    for s in stats:
        writer.add_scalar(f"spike_rate/{s['layer']}", s["spike_rate"], epoch)
    for name, curve in gamma_curves(model).items():
        writer.add_histogram(f"gamma/{name}", curve, epoch)


def run(argv: list[str] | None = None) -> int:
    """Console entry point: parse, train, and report user errors in one line (exit 2).
    ``train.py convert ...`` runs the ANN -> SNN conversion (:mod:`bntt_snntorch.convert`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:
        from .convert import run as run_conversion

        return run_conversion(argv[1:])
    parser = get_args_parser()
    args = parser.parse_args(argv)
    tune_cpu_allocator()
    try:
        if args.evaluate:
            args.run = args.evaluate
            analyze(args)
        else:
            main(args)
    except (DatasetNotFoundError, ConfigError, CheckpointError, CorruptRecordingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"error: training diverged: {err}", file=sys.stderr)
        return 1
    return 0
