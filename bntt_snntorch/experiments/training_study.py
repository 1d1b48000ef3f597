"""BPTT vs online training (SLTT, SLTT-K, OTTT) side by side: same recipe, same seeds.

``compare_training(TrainingStudyOptions(...)) -> table``; what ``python -m bntt_snntorch
compare-training`` runs. Trains (or reuses, or resumes) ``OUTPUT/<mode>-seed<s>`` for every gradient rule and
seed with the data set's recipe (BNTT, the seed neuron), then reports the test accuracy of the last
epoch (mean ± std over seeds), the training throughput, and the bytes held for backward at the peak
of one training step (:class:`~bntt_snntorch.profiling.LiveSavedTensors`). Writes ``comparison.md`` /
``.csv`` and ``accuracy.png`` (test accuracy per epoch, mean over seeds).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import encoding
from ..files import write_csv, write_text
from ..plots import plot_training_comparison
from ..profiling import LiveSavedTensors
from ..training import TrainConfig, train_or_resume
from ..training.online import online_backward
from ..training.runs import build_model, run_datasets
from .command_line import command_line

MODES = ("bptt", "sltt", "sltt-k", "ottt")
LABELS = {"bptt": "BPTT", "sltt": "SLTT", "sltt-k": "SLTT-K", "ottt": "OTTT"}


@dataclass
class TrainingStudyOptions:
    """What :func:`compare_training` trains and measures."""

    dataset: str = "digits"
    recipe: str | None = None  # default: the data set's (a finished run of another recipe is refused)
    modes: tuple = MODES  # bptt, sltt, sltt-k (SLTT with --sltt-k), ottt
    sltt_k: int = 2  # K of SLTT-K: steps backpropagated per batch
    seeds: int = 3  # seeds 0..N-1 per mode
    num_epochs: int | None = None  # default: the recipe's
    output_dir: str | None = None  # default: runs/online-training-<dataset>
    max_batches: int | None = None  # batches per epoch (short runs)
    data_dir: str | None = None
    device: str = "auto"
    progress: bool = True


def _settings(mode: str, o: TrainingStudyOptions) -> dict:
    if mode == "sltt-k":
        return dict(training="sltt", sltt_k=o.sltt_k)
    return dict(training=mode)


def compare_training(options: TrainingStudyOptions | None = None) -> list[dict]:
    """Train (or reuse) every mode and seed, measure, and write the study; returns the table rows."""
    o = options or TrainingStudyOptions()
    out = Path(o.output_dir or f"runs/online-training-{o.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for mode in o.modes:
        for seed in range(o.seeds):
            run = out / f"{mode}-seed{seed}"
            cfg = TrainConfig.from_recipe(
                o.recipe, dataset=o.dataset, seed=seed, output_dir=str(run), num_epochs=o.num_epochs,
                data_dir=o.data_dir, device=o.device, max_batches=o.max_batches, progress=o.progress,
                **_settings(mode, o),
            )  # fmt: skip
            train_or_resume(cfg)
            with open(run / "metrics.csv") as f:
                rows = list(csv.DictReader(f))
            runs.append(dict(mode=mode, seed=seed, rows=rows, cfg=cfg))
    table = [summarize(mode, [r for r in runs if r["mode"] == mode], o) for mode in o.modes]
    _write(table, runs, out, o)
    print((out / "comparison.md").read_text())
    return table


def peak_saved_bytes(cfg: TrainConfig) -> int:
    """The most bytes held for backward at once during one training step of ``cfg``'s model on one batch
    of its training set (fresh weights, float32)."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = build_model(cfg).to(device).train()
    train_set, _, _ = run_datasets(cfg, progress=False)
    images, labels = next(iter(torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size)))
    x_seq = encoding.encode(images.to(device), cfg.num_steps, cfg.encode, torch.Generator(device).manual_seed(0))
    with LiveSavedTensors() as live:
        if cfg.training == "bptt":
            F.cross_entropy(model(x_seq), labels.to(device)).backward()
        else:
            online_backward(model, x_seq, labels.to(device), cfg.training, cfg.sltt_k)
    return live.peak


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(mode: str, group: list[dict], o: TrainingStudyOptions) -> dict:
    acc, acc_std = _mean_std([float(r["rows"][-1]["test_acc"]) for r in group])
    epochs = len(group[0]["rows"])
    return dict(
        mode=mode,
        seeds=len(group),
        test_acc=acc,
        test_acc_std=acc_std,
        best_test_acc=statistics.mean(max(float(row["test_acc"]) for row in r["rows"]) for r in group),
        # the median epoch of each run (robust to a stall of the machine), averaged over seeds
        train_samples_per_s=statistics.mean(
            statistics.median(float(row["samples_per_s"]) for row in r["rows"]) for r in group
        ),  # fmt: skip
        peak_saved_mib=peak_saved_bytes(group[0]["cfg"]) / 2**20,
        acc_per_epoch=[statistics.mean(float(r["rows"][e]["test_acc"]) for r in group) for e in range(epochs)],
    )


def _write(table: list[dict], runs: list[dict], out: Path, o: TrainingStudyOptions) -> None:
    cfg = runs[0]["cfg"]
    write_csv(out / "comparison.csv", [{k: v for k, v in r.items() if k != "acc_per_epoch"} for r in table])
    bptt = next((r for r in table if r["mode"] == "bptt"), None)
    lines = [
        f"# BPTT vs online training on {o.dataset}: {', '.join(LABELS[r['mode']] for r in table)}",
        "",
        f"Same recipe ({cfg.recipe or o.dataset}: {cfg.arch}, BNTT, T={cfg.num_steps}, {len(runs[0]['rows'])} "
        f"epochs, batch {cfg.batch_size}) and seeds (0..{o.seeds - 1}) for every mode; test accuracy of the last "
        "epoch, mean ± std over seeds; train img/s: each run's median epoch, averaged over seeds; SLTT-K "
        f"backpropagates K={o.sltt_k} random steps of T per batch. Peak "
        "saved: the most bytes held for backward at once over one training step (forward and backward of a batch).",
        "",
        f"Command: `{command_line('compare-training', o)}`",
        "",
        "| mode | test acc. (%) | best epoch's (%) | train img/s | peak saved for backward (MiB) |",
        "|---|---|---|---|---|",
    ]
    for r in table:
        ratio = f" ({r['peak_saved_mib'] / bptt['peak_saved_mib']:.2f}x BPTT)" if bptt and r is not bptt else ""
        lines.append(
            f"| {LABELS[r['mode']]} | {100 * r['test_acc']:.2f} ± {100 * r['test_acc_std']:.2f} | "
            f"{100 * r['best_test_acc']:.2f} | {r['train_samples_per_s']:.0f} | {r['peak_saved_mib']:.1f}{ratio} |"
        )
    if bptt:
        lines += [""] + [
            f"- {LABELS[r['mode']]}: {100 * (r['test_acc'] - bptt['test_acc']):+.2f} points vs BPTT"
            for r in table
            if r is not bptt
        ]
    write_text(out / "comparison.md", "\n".join(lines) + "\n")
    plot_training_comparison({LABELS[r["mode"]]: r["acc_per_epoch"] for r in table}, out / "accuracy.png", o.dataset)
