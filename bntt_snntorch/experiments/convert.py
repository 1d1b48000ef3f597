"""Convert a trained ANN to a spiking network and measure its accuracy over time (Lu & Sengupta 2020).

``convert_run(model, output_dir, ConversionOptions(...)) -> summary``; what
``python -m bntt_snntorch convert`` runs. ``model`` is a run folder or checkpoint of a training
run (an ANN trained with a ``bsnn-*`` recipe), or a plain state dict of the original code (then
``arch`` and ``dataset`` are required). Writes into ``output_dir``: the accuracy after every
step 1..T (``results_file``, CSV), ``summary.json`` (ANN accuracy, per-layer lambdas) and
``accuracy_vs_time.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..conversion import accuracy_over_time, activation_scales, convert
from ..data import build_datasets
from ..files import write_csv, write_json
from ..models import is_ann
from ..plots import plot_conversion
from ..training import CheckpointError, TrainConfig, resolve_device
from ..training.config import default_data_dir
from ..training.runs import build_model, load_weights, model_from_checkpoint, read_checkpoint


@dataclass
class ConversionOptions:
    """How :func:`convert_run` converts and simulates (the original conversion script's settings)."""

    num_steps: int = 80  # simulation time steps T
    percentile: float = 99.9  # percentile of each layer's activations used as its lambda
    norm_images: int = 3500  # training images for threshold balancing
    one_step: bool = False  # an input crosses all layers in one step (default: one step per layer, as BindsNET)
    arch: str | None = None  # expected architecture (required for a plain state dict)
    dataset: str | None = None  # default: the checkpoint's
    data_dir: str | None = None  # default: $BNTT_DATA_DIR, else ./datasets
    batch_size: int = 100
    num_workers: int = -1  # data-loading processes (-1: 4 on a GPU, else 0)
    eval_size: int | None = None  # test images to evaluate (default all)
    seed: int = 0  # seed of the choice of balancing images
    device: str = "auto"
    results_file: str = "accuracy_vs_time.csv"  # CSV of accuracy per step, inside output_dir
    progress: bool = True


def _strip_prefix(state: dict) -> dict:
    """Drop DataParallel's ``module.`` from the original code's keys (``features.module.0.weight``)."""
    return {k.replace("module.", ""): v for k, v in state.items()}


def load_ann(path: str | Path, arch: str | None, dataset: str | None, device: torch.device):
    """``(ann, arch, dataset)`` from a training run / checkpoint or a plain state dict."""
    raw, ckpt_path = read_checkpoint(path, device)
    if isinstance(raw, dict) and "config" in raw:
        saved_arch, saved_dataset = raw["config"]["arch"], raw["config"]["dataset"]
        if arch is not None and arch != saved_arch:
            raise CheckpointError(f"{ckpt_path} holds a {saved_arch!r} network, but --arch asks for {arch!r}")
        if dataset is not None and dataset != saved_dataset:
            raise CheckpointError(f"{ckpt_path} was trained on {saved_dataset!r}, but --dataset asks for {dataset!r}")
        if not is_ann(saved_arch):
            raise CheckpointError(
                f"{ckpt_path} holds the spiking net {saved_arch!r}; conversion needs an ANN trained "
                "with a bsnn-* recipe (e.g. python train.py --recipe bsnn-digits-fp)"
            )
        ann, _ = model_from_checkpoint(raw, ckpt_path, device)
        return ann, saved_arch, saved_dataset
    if arch is None or dataset is None:
        raise CheckpointError(f"{ckpt_path} is a plain state dict: pass --arch and --dataset to say what it holds")
    ann = build_model(TrainConfig(arch=arch, dataset=dataset))
    load_weights(ann, _strip_prefix(raw.get("state_dict", raw)), ckpt_path, f"--arch {arch} on {dataset}")
    return ann.to(device).eval(), arch, dataset


def convert_run(model: str | Path, output_dir: str | Path, options: ConversionOptions | None = None) -> dict:
    """Convert the ANN in ``model``, simulate ``options.num_steps`` steps on the test set, write the
    accuracy per step, ``summary.json`` and the plot into ``output_dir``; returns the summary."""
    o = options or ConversionOptions()
    device = resolve_device(o.device)
    workers = (4 if device.type == "cuda" else 0) if o.num_workers < 0 else o.num_workers
    ann, arch, dataset = load_ann(model, o.arch, o.dataset, device)
    train_set, test_set, _ = build_datasets(dataset, o.data_dir or default_data_dir())
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    scales = _balance(ann, train_set, o, workers, device)
    snn_net = convert(ann, scales, one_step=o.one_step)
    eval_size = len(test_set) if o.eval_size is None else min(o.eval_size, len(test_set))
    snn_acc, ann_acc = _simulate(ann, snn_net, Subset(test_set, range(eval_size)), o, workers, device)

    write_csv(
        out / o.results_file,
        [{"step": t + 1, "snn_accuracy": a, "ann_accuracy": ann_acc} for t, a in enumerate(snn_acc)],
    )
    within = {pts: next((t + 1 for t, a in enumerate(snn_acc) if a >= ann_acc - pts / 100), None) for pts in (1, 2)}
    summary = dict(
        model=str(model),
        arch=arch,
        dataset=dataset,
        num_steps=o.num_steps,
        one_step=o.one_step,
        percentile=o.percentile,
        norm_images=min(o.norm_images, len(train_set)),
        eval_size=eval_size,
        ann_accuracy=ann_acc,
        snn_accuracy_final=snn_acc[-1],
        best_snn_accuracy=max(snn_acc),
        first_step_within_1_point=within[1],
        first_step_within_2_points=within[2],
        scales=scales,
    )
    write_json(out / "summary.json", summary)
    plot_conversion(
        snn_acc,
        ann_acc,
        out / "accuracy_vs_time.png",
        title=f"{arch} on {dataset}: converted SNN ({'one step' if o.one_step else 'layer delay'})",
    )
    print(
        f"ANN {100 * ann_acc:.2f}%  SNN after {o.num_steps} steps {100 * snn_acc[-1]:.2f}% "
        f"(within 1 point from step {within[1]}); results in {out}"
    )
    return summary


def _balance(ann, train_set, o: ConversionOptions, workers: int, device) -> list[float]:
    """Per-layer lambdas: the ``percentile`` of each layer's activations over ``norm_images`` training images."""
    count = min(o.norm_images, len(train_set))
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(o.seed))[:count]
    loader = DataLoader(Subset(train_set, order.tolist()), batch_size=o.batch_size, num_workers=workers)
    batches = (images.to(device) for images, _ in tqdm(loader, desc="balancing", leave=False, disable=not o.progress))
    return activation_scales(ann, batches, count, o.percentile)


def _simulate(ann, snn_net, test_set, o: ConversionOptions, workers: int, device) -> tuple[list[float], float]:
    """``(SNN accuracy after each step 1..T, ANN accuracy)`` on ``test_set``."""
    loader = DataLoader(test_set, batch_size=o.batch_size, num_workers=workers)
    snn_correct = torch.zeros(o.num_steps, dtype=torch.long)
    ann_correct = 0
    with torch.no_grad():
        for images, labels in tqdm(loader, desc=f"simulating {o.num_steps} steps", disable=not o.progress):
            images, labels = images.to(device), labels.to(device)
            ann_correct += int((ann(images).argmax(1) == labels).sum())
            snn_correct += accuracy_over_time(snn_net, images, labels, o.num_steps).cpu()
    return (snn_correct.double() / len(test_set)).tolist(), ann_correct / len(test_set)
