"""``train(cfg) -> TrainResult``: one training run, from a :class:`TrainConfig` to its folder.

A run folder holds ``config.json``, ``metrics.csv`` (one row an epoch), ``curves.png``,
``layer_stats.csv`` (spike rate and mean gamma per layer and epoch), ``last.pt`` (and
``last.prev.pt``), ``best.pt``, and with ``tensorboard=True`` a ``tensorboard/`` log.
Checkpoints hold everything an exact resume needs; a run killed at any moment resumes
with ``resume="auto"`` and gives the numbers of an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from .. import encoding
from ..analysis import count_operations, gamma_curves
from ..files import write_csv, write_json
from ..models import SpikingNet
from ..plots import plot_training_curves
from .checkpoint import load_latest_good, previous_path, rng_state, save_checkpoint, set_rng_state
from .config import ConfigError, TrainConfig
from .distributed import all_reduce_sum, barrier, gather_generator_states, init_from_env, is_main, sync_batchnorm_tt
from .loop import EpochProgress, EpochResult, LoopOptions, evaluate, train_one_epoch
from .runs import build_model, run_datasets

METRIC_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "samples_per_s"]
LAYER_FIELDS = ["epoch", "layer", "spike_rate", "mean_gamma"]
RESUME_KEYS = ("arch", "dataset", "num_steps", "encode", "batch_size", "num_epochs", "training")
#: The :class:`TrainConfig` fields that say where and how a run is carried out, not what it computes: a
#: finished run is reused by :func:`train_or_resume` whatever they were.
RUN_ONLY_FIELDS = (
    "recipe", "data_dir", "download", "device", "output_dir", "num_workers", "progress", "resume", "save_every",
    "tensorboard",
)  # fmt: skip


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``rows``: the ``metrics.csv`` rows (dicts with its columns, one an epoch); ``model``: the
    trained model (last epoch's weights, on the run's device); ``best_checkpoint`` /
    ``last_checkpoint``: paths in ``output_dir``.
    """

    rows: list[dict]
    model: nn.Module
    output_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_test_acc: float
    best_epoch: int

    @property
    def test_acc(self) -> float:
        """Test accuracy after the last epoch."""
        return self.rows[-1]["test_acc"]

    @property
    def seconds(self) -> float:
        """Training plus evaluation time of all epochs."""
        return sum(r["epoch_seconds"] for r in self.rows)

    def summary(self) -> dict:
        return dict(
            test_acc=self.test_acc,
            best_test_acc=self.best_test_acc,
            best_epoch=self.best_epoch,
            seconds=self.seconds,
            output_dir=str(self.output_dir),
        )


def train(cfg: TrainConfig) -> TrainResult:
    """Train as ``cfg`` says (see :meth:`TrainConfig.from_recipe`); returns the :class:`TrainResult`.

    Example::

        cfg = TrainConfig.from_recipe("digits", num_epochs=5, output_dir="runs/demo", progress=False)
        result = train(cfg)
        result.rows[-1]["test_acc"], result.best_checkpoint
    """
    return _Run(cfg).run()


def train_or_resume(cfg: TrainConfig) -> Path:
    """Make sure the run in ``cfg.output_dir`` is finished; returns that folder.

    Nothing is trained when its ``last.pt`` and ``metrics.csv`` hold all ``cfg.num_epochs`` epochs; a run
    cut short (killed, or fewer epochs) is resumed from its ``last.pt``; otherwise it is trained from the
    start. What the studies use to reuse their runs. A run there that ``cfg`` would not have trained (its
    ``config.json`` differs in a field outside :data:`RUN_ONLY_FIELDS`, e.g. after a recipe changed) is
    neither reused nor resumed: a :class:`ConfigError` names the fields.
    """
    out = Path(cfg.output_dir)
    metrics = out / "metrics.csv"
    _check_same_recipe(out, cfg)
    if (out / "last.pt").exists() and metrics.exists():
        with open(metrics) as f:
            if sum(1 for _ in csv.DictReader(f)) >= cfg.num_epochs:
                return out
    train(replace(cfg, resume="auto"))
    return out


def _check_same_recipe(out: Path, cfg: TrainConfig) -> None:
    """Raise a one-line :class:`ConfigError` if ``out`` holds a run whose saved config differs from ``cfg`` in
    what the run computes (every field but :data:`RUN_ONLY_FIELDS`)."""
    try:
        saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    except FileNotFoundError:
        return
    differ = [
        f"{f.name} {getattr(saved, f.name)!r} (asked: {getattr(cfg, f.name)!r})"
        for f in fields(TrainConfig)
        if f.name not in RUN_ONLY_FIELDS and getattr(saved, f.name) != getattr(cfg, f.name)
    ]
    if differ:
        raise ConfigError(
            f"{out} holds a run trained with {', '.join(differ)}: pass the flags it was trained with (e.g. its "
            "--recipe) or another --output-dir"
        )


def build_optimizer(cfg: TrainConfig, model: nn.Module):
    """``(optimizer, scheduler)`` of the recipe: SGD or Adam; milestones (fractions of the epochs), a fixed
    step, or a cosine from ``lr`` to zero over the epochs; each stepped once an epoch. The optimizer updates
    all parameters with one op each step of its rule (``foreach``, torch's default on CUDA only): a BNTT
    model has a gamma a layer and step, and on CPU the per-parameter loop's ops cost more than their work
    (the same values, bit for bit)."""
    params, decay = model.parameters(), cfg.weight_decay
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=decay, foreach=True)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas, weight_decay=decay, foreach=True)
    if cfg.lr_scheduler == "cosine":
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.num_epochs)
    if cfg.lr_step:
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, gamma=cfg.lr_gamma)
    milestones = sorted({max(1, int(round(f * cfg.num_epochs))) for f in cfg.lr_milestones})
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.lr_gamma)


class _Run:
    """The state of one run: built from the config (or a checkpoint), advanced epoch by epoch."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.rank, self.world = init_from_env(self.device)
        if cfg.batch_size % self.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} must divide evenly over {self.world} processes")
        self.show = cfg.progress and is_main()
        self.train_set, self.test_set, _ = run_datasets(cfg, download=cfg.download, progress=self.show)
        _seed_everything(cfg.seed)  # after the data: building a frame cache draws from torch's generator
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = build_model(cfg).to(self.device).to(memory_format=self.memory_format)
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.amp == "fp16" else None
        self.options = LoopOptions(self.device, cfg.amp, self.memory_format, cfg.max_batches, self.show,
                                   cfg.training, cfg.sltt_k, label_smoothing=cfg.label_smoothing)  # fmt: skip
        self.test_loader = DataLoader(self.test_set, batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        self.train_gen = torch.Generator(self.device).manual_seed(cfg.seed * self.world + self.rank)
        self.out = Path(cfg.output_dir)
        self.rows: list[dict] = []
        self.layer_rows: list[dict] = []
        self.best_acc, self.best_epoch, self.start_epoch, self.progress, self.step = -1.0, 0, 1, EpochProgress(), 0

    # -- checkpoints -------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        if self.cfg.resume is None:
            return None
        if self.cfg.resume != "auto":
            return Path(self.cfg.resume)
        candidate = self.out / "last.pt"
        return candidate if candidate.exists() or previous_path(candidate).exists() else None

    def _restore(self, path: Path) -> None:
        ckpt, used = load_latest_good(path)
        for key in RESUME_KEYS:
            saved = ckpt["config"].get(
                key, TrainConfig.__dataclass_fields__[key].default
            )  # a key older runs lack: its default
            if saved != getattr(self.cfg, key):
                raise ConfigError(
                    f"--resume {used}: the checkpoint has {key}={saved!r}, this run asks "
                    f"for {getattr(self.cfg, key)!r}; use the same flags or a new --output-dir"
                )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.rows, self.best_acc, self.best_epoch = ckpt["rows"], ckpt["best_acc"], ckpt["best_epoch"]
        self.layer_rows = ckpt.get("layer_rows", [])
        self.start_epoch, self.progress, self.step = ckpt["epoch"], EpochProgress(**ckpt["progress"]), ckpt["step"]
        set_rng_state(ckpt["rng"])
        self.train_gen.set_state(ckpt["poisson_generator"][self.rank])
        if is_main():
            print(f"resumed from {used}: epoch {self.start_epoch}, batch {self.progress.batches}", flush=True)

    def _save(self, epoch: int, epoch_progress: EpochProgress, best: bool = False) -> None:
        """Checkpoint; ``epoch`` is the epoch to run next (or to finish). Every rank joins the gather."""
        snapshot = dict(
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=None if self.scaler is None else self.scaler.state_dict(),
            epoch=epoch,
            step=self.step,
            progress=asdict(epoch_progress),
            rows=self.rows,
            layer_rows=self.layer_rows,
            best_acc=self.best_acc,
            best_epoch=self.best_epoch,
            rng=rng_state(),
            poisson_generator=gather_generator_states(self.train_gen, self.world),
            config=self.cfg.to_dict(),
        )
        if is_main():
            save_checkpoint(snapshot, self.out / "last.pt", keep_previous=True)
            if best:
                save_checkpoint(snapshot, self.out / "best.pt")

    def _on_batch_end(self, epoch: int):
        def on_batch_end(batches: int, read) -> None:
            self.step += 1
            if self.cfg.save_every and self.step % self.cfg.save_every == 0:
                self._save(epoch, read())  # read() raises before anything non-finite is saved

        return on_batch_end

    # -- the loop ------------------------------------------------------------------
    def _train_loader(self, epoch: int) -> DataLoader:
        """The loader of one epoch: its order (and the workers' augmentation seeds, or the draws of a training
        set that has ``set_epoch``) depend only on (seed, epoch), so a resumed run draws exactly the same
        batches. ``batch_size`` is the global batch, split over the processes."""
        cfg = self.cfg
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        sampler = DistributedSampler(
            self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        return DataLoader(
            self.train_set,
            batch_size=cfg.batch_size // self.world,
            sampler=sampler,
            num_workers=cfg.num_workers,
            drop_last=len(self.train_set) > cfg.batch_size,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch),
        )

    def _encoder(self, generator: torch.Generator) -> encoding.SequenceEncoder:
        return encoding.SequenceEncoder(self.cfg.num_steps, self.cfg.encode, generator)

    # -- the run, step by step -------------------------------------------------------
    def run(self) -> TrainResult:
        """Restore, write the config, run the remaining epochs, report."""
        resume_from = self._resume_path()
        if resume_from is not None:
            self._restore(resume_from)
        train_model = self._training_model()
        self._write_config()
        writer = _tensorboard(self.out) if (self.cfg.tensorboard and is_main()) else None
        for epoch in range(self.start_epoch, self.cfg.num_epochs + 1):
            self._run_epoch(epoch, train_model, writer)
        if is_main() and self.start_epoch > self.cfg.num_epochs:  # a finished run was resumed: no epoch rewrote it
            self._write_epoch_files()
        if writer is not None:
            writer.close()
        return self._result()

    def _training_model(self) -> nn.Module:
        """The model the optimizer steps through: DDP over several processes, compiled if asked."""
        model = self.model
        if self.world > 1:
            sync_batchnorm_tt(model)
            model = DistributedDataParallel(model)
        return torch.compile(model, dynamic=False) if self.cfg.compile else model

    def _write_config(self) -> None:
        if is_main():
            self.out.mkdir(parents=True, exist_ok=True)
            provenance = {"git_commit": _git_commit(), "torch": torch.__version__, "command": sys.argv}
            if hasattr(self.train_set, "split"):  # event sets: the split's rule and sizes
                provenance["data_split"] = self.train_set.split
            write_json(self.out / "config.json", {**self.cfg.to_dict(), **provenance, "world_size": self.world})

    def _run_epoch(self, epoch: int, train_model: nn.Module, writer) -> None:
        """Train, evaluate, step the schedule, checkpoint and write the files of one epoch."""
        if self.cfg.weight_decay_until is not None and epoch > self.cfg.weight_decay_until:
            for group in self.optimizer.param_groups:
                group["weight_decay"] = 0.0
        lr = self.optimizer.param_groups[0]["lr"]
        trained = self._train_epoch(epoch, train_model)
        eval_encode = self._encoder(torch.Generator(self.device).manual_seed(self.cfg.eval_seed))
        tested = evaluate(self.model, self.test_loader, eval_encode, self.options)
        self.scheduler.step()
        self.rows.append(dict(epoch=epoch, lr=lr, train_loss=trained.loss, train_acc=trained.accuracy,
                              test_loss=tested.loss, test_acc=tested.accuracy,
                              epoch_seconds=trained.seconds + tested.seconds,
                              samples_per_s=trained.samples_per_s))  # fmt: skip
        self.progress = EpochProgress()
        improved = tested.accuracy > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = tested.accuracy, epoch
        first_batch = next(iter(self.test_loader))[0].to(self.device)
        stats = _layer_stats(self.model, eval_encode(first_batch)) if is_main() else []
        self.layer_rows += [{"epoch": epoch, **row} for row in stats]
        self._save(epoch + 1, self.progress, best=improved)
        if is_main():
            self._write_epoch_files()
            if writer is not None:
                _log_tensorboard(writer, self.rows[-1], stats, self.model)
            if self.cfg.progress:
                train_part = f"train loss {trained.loss:.4f} acc {100 * trained.accuracy:.2f}%"
                test_part = f"test loss {tested.loss:.4f} acc {100 * tested.accuracy:.2f}%"
                print(f"epoch {epoch:3d}  lr {lr:.2e}  {train_part}  {test_part}  {trained.samples_per_s:.0f} img/s",
                      flush=True)  # fmt: skip
        barrier()

    def _train_epoch(self, epoch: int, train_model: nn.Module) -> EpochResult:
        """One training epoch (resumed mid-epoch from ``self.progress``), its sums over all processes."""
        try:
            train_one_epoch(train_model, self._train_loader(epoch), self.optimizer, self._encoder(self.train_gen),
                            self.options, desc=f"epoch {epoch}/{self.cfg.num_epochs}", scaler=self.scaler,
                            state=self.progress, on_batch_end=self._on_batch_end(epoch))  # fmt: skip
        except FloatingPointError as err:
            last = self.out / "last.pt"
            kept = (
                f"the last good checkpoint is {last} (lower --lr and --resume it)"
                if last.exists()
                else "no checkpoint was written yet (lower --lr)"
            )
            raise FloatingPointError(f"{err}; {kept}") from None
        p = self.progress
        loss_sum, correct, seen = all_reduce_sum([p.loss_sum, p.correct, p.seen], self.device)
        return EpochProgress(p.batches, loss_sum, int(correct), int(seen), p.seconds).result()

    def _result(self) -> TrainResult:
        result = TrainResult(
            self.rows, self.model, self.out, self.out / "best.pt", self.out / "last.pt", self.best_acc, self.best_epoch
        )
        if is_main():
            print(
                f"final test accuracy {100 * result.test_acc:.2f}% (best {100 * self.best_acc:.2f}% at epoch "
                f"{self.best_epoch}); {result.seconds:.1f} s of training and evaluation on {self.device} "
                f"x{self.world}; results in {self.out}"
            )
        return result

    def _write_epoch_files(self) -> None:
        write_csv(self.out / "metrics.csv", self.rows, METRIC_FIELDS)
        plot_training_curves(self.rows, self.out / "curves.png", self.cfg.label_smoothing)
        if self.layer_rows:
            write_csv(self.out / "layer_stats.csv", self.layer_rows, LAYER_FIELDS)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _git_commit() -> str | None:
    """The commit of the package's checkout, if it is one (None for an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _layer_stats(model, x_seq) -> list[dict]:
    """Spike rate and mean BNTT gamma of every spiking layer (one batch); none for an ANN."""
    if not isinstance(model, SpikingNet):
        return []
    gammas = {name.rsplit(".norm", 1)[0]: float(c.mean()) for name, c in gamma_curves(model).items()}
    return [
        {"layer": op.name, "spike_rate": op.output_rate, "mean_gamma": gammas.get(op.name)}
        for op in count_operations(model, x_seq)
        if op.output_rate is not None
    ]


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(out / "tensorboard"))


def _log_tensorboard(writer, row: dict, stats: list[dict], model) -> None:
    epoch = row["epoch"]
    for key in METRIC_FIELDS[1:]:
        writer.add_scalar(key, row[key], epoch)
    for s in stats:
        writer.add_scalar(f"spike_rate/{s['layer']}", s["spike_rate"], epoch)
    for name, curve in gamma_curves(model).items():
        writer.add_histogram(f"gamma/{name}", curve, epoch)
