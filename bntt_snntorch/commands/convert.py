"""Convert a trained ANN to a spiking network and measure its accuracy over time.

    python train.py convert --job-dir DIR --model RUN_OR_CHECKPOINT [--time 100] [--percentile 99.9] ...
    python -m bntt_snntorch.convert ...        # the same; console script: bntt-convert

The flags are those of the original conversion script (Lu & Sengupta 2020).
``--model`` is a run folder or checkpoint of ``train.py`` (an ANN trained with
a ``bsnn-*`` recipe), or a plain state dict of the original code (then
``--arch`` and ``--dataset`` are required). Writes into ``--job-dir``: the
accuracy after every step 1..T (``--results-file``, CSV), ``summary.json``
(ANN accuracy, per-layer lambdas) and ``accuracy_vs_time.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..conversion import accuracy_over_time, activation_scales, convert
from ..data import build_datasets
from ..files import write_csv, write_json
from ..models import is_ann, list_models
from ..plots import plot_conversion
from ..training import CheckpointError, TrainConfig, resolve_device
from ..training.config import default_data_dir
from ..training.runs import build_model, load_weights, model_from_checkpoint, read_checkpoint
from .common import add_device_flag, add_flag, exit_status


def get_args_parser() -> argparse.ArgumentParser:
    """The conversion code's flags (its spellings ``--job-dir``, ``--time``, ``--data``, ``--gpu``,
    ``--n_workers`` are aliases of ``--output-dir``, ``--num-steps``, ``--data-dir``, ``--device``,
    ``--num-workers``)."""
    p = argparse.ArgumentParser(
        prog="train.py convert",
        description="ANN -> SNN conversion with percentile threshold balancing; accuracy after every step.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_flag(p, "--output-dir", required=True, help="output folder")
    p.add_argument(
        "--model", required=True, help="train.py run folder / checkpoint, or a state dict of the original code"
    )
    add_flag(p, "--results-file", default="accuracy_vs_time.csv", help="CSV of accuracy per step, inside --output-dir")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of --norm images")
    add_flag(p, "--num-steps", type=int, default=80, help="simulation time steps T")
    add_flag(p, "--batch-size", type=int, default=100, help="images per batch")
    add_flag(p, "--num-workers", type=int, default=-1, help="data-loading processes (-1: 4 on a GPU, else 0)")
    p.add_argument("--norm", type=int, default=3500, help="training images for threshold balancing")
    add_device_flag(p)
    add_flag(
        p,
        "--one-step",
        action="store_true",
        help="propagate an input through all layers in one step (default: one step per layer, as BindsNET)",
    )
    add_flag(p, "--data-dir", help="data root (default: $BNTT_DATA_DIR, else ./datasets)")
    p.add_argument(
        "--arch",
        choices=[m for m in list_models() if is_ann(m)],
        help="expected architecture (required for a plain state dict)",
    )
    p.add_argument(
        "--percentile", type=float, default=99.9, help="percentile of each layer's activations used as lambda"
    )
    add_flag(p, "--eval-size", type=int, help="test images to evaluate (default all)")
    p.add_argument("--dataset", help="data set (default: the checkpoint's)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the tqdm bars")
    return p


def _strip_prefix(state: dict) -> dict:
    """Drop DataParallel's ``module.`` from the original code's keys (``features.module.0.weight``)."""
    return {k.replace("module.", ""): v for k, v in state.items()}


def load_ann(path: str | Path, arch: str | None, dataset: str | None, device: torch.device):
    """``(ann, arch, dataset)`` from a train.py run / checkpoint or a plain state dict."""
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


def convert_checkpoint(
    model: str | Path,
    output_dir: str | Path,
    *,
    num_steps: int = 80,
    percentile: float = 99.9,
    norm: int = 3500,
    one_step: bool = False,
    arch: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 100,
    num_workers: int = -1,
    eval_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    results_file: str = "accuracy_vs_time.csv",
    progress: bool = True,
) -> dict:
    """Convert the ANN in ``model`` (a run folder / checkpoint, or the original code's state dict
    with ``arch`` and ``dataset``), simulate ``num_steps`` steps on the test set, and write the
    accuracy per step (CSV), ``summary.json`` and ``accuracy_vs_time.png`` into ``output_dir``.
    Returns the summary."""
    device = resolve_device(device)
    workers = (4 if device.type == "cuda" else 0) if num_workers < 0 else num_workers
    ann, arch, dataset = load_ann(model, arch, dataset, device)
    train_set, test_set, _ = build_datasets(dataset, data_dir or default_data_dir())
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    norm = min(norm, len(train_set))
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[:norm]
    norm_loader = DataLoader(Subset(train_set, order.tolist()), batch_size=batch_size, num_workers=workers)
    norm_batches = (
        images.to(device) for images, _ in tqdm(norm_loader, desc="balancing", leave=False, disable=not progress)
    )
    scales = activation_scales(ann, norm_batches, norm, percentile)
    snn_net = convert(ann, scales, one_step=one_step)

    eval_size = len(test_set) if eval_size is None else min(eval_size, len(test_set))
    test_loader = DataLoader(Subset(test_set, range(eval_size)), batch_size=batch_size, num_workers=workers)
    snn_correct = torch.zeros(num_steps, dtype=torch.long)
    ann_correct = 0
    with torch.no_grad():
        for images, labels in tqdm(test_loader, desc=f"simulating {num_steps} steps", disable=not progress):
            images, labels = images.to(device), labels.to(device)
            ann_correct += int((ann(images).argmax(1) == labels).sum())
            snn_correct += accuracy_over_time(snn_net, images, labels, num_steps).cpu()
    snn_acc = (snn_correct.double() / eval_size).tolist()
    ann_acc = ann_correct / eval_size

    write_csv(
        out / results_file, [{"step": t + 1, "snn_accuracy": a, "ann_accuracy": ann_acc} for t, a in enumerate(snn_acc)]
    )
    within = {pts: next((t + 1 for t, a in enumerate(snn_acc) if a >= ann_acc - pts / 100), None) for pts in (1, 2)}
    summary = dict(
        model=str(model),
        arch=arch,
        dataset=dataset,
        time=num_steps,
        one_step=one_step,
        percentile=percentile,
        norm_images=norm,
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
        title=f"{arch} on {dataset}: converted SNN ({'one step' if one_step else 'layer delay'})",
    )
    print(
        f"ANN {100 * ann_acc:.2f}%  SNN after {num_steps} steps {100 * snn_acc[-1]:.2f}% "
        f"(within 1 point from step {within[1]}); results in {out}"
    )
    return summary


def main(args: argparse.Namespace) -> dict:
    """Convert as the parsed flags say; returns the summary."""
    return convert_checkpoint(
        args.model,
        args.output_dir,
        num_steps=args.num_steps,
        percentile=args.percentile,
        norm=args.norm,
        one_step=args.one_step,
        arch=args.arch,
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        eval_size=args.eval_size,
        seed=args.seed,
        device=args.device,
        results_file=args.results_file,
        progress=args.progress,
    )


def run(argv: list[str] | None = None) -> int:
    """Console entry point; user errors become one line on stderr (exit 2)."""
    args = get_args_parser().parse_args(argv)
    return exit_status(lambda: main(args))


if __name__ == "__main__":
    sys.exit(run())
