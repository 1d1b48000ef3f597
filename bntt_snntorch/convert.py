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
import csv
import io
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from . import plots
from .checkpoint import atomic_write
from .conversion import accuracy_over_time, activation_scales, convert
from .data import DatasetNotFoundError, build_datasets
from .models import is_ann, list_models
from .runs import CheckpointError, build_model, load_weights, model_from_checkpoint, read_checkpoint

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py convert",
        description="ANN -> SNN conversion with percentile threshold balancing; accuracy after every step.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--job-dir", "--job_dir", dest="job_dir", required=True, help="output folder")
    p.add_argument("--model", required=True, help="train.py run folder / checkpoint, or a state dict of the original code")
    p.add_argument("--results-file", "--results_file", dest="results_file", default="accuracy_vs_time.csv",
                   help="CSV of accuracy per step, inside --job-dir")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of --norm images")
    p.add_argument("--time", type=int, default=80, help="simulation time steps T")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=100, help="images per batch")
    p.add_argument("--n-workers", "--n_workers", dest="n_workers", type=int, default=-1,
                   help="data-loading processes (-1: 4 with --gpu, else 0)")
    p.add_argument("--norm", type=int, default=3500, help="training images for threshold balancing")
    p.add_argument("--gpu", action="store_true", help="run on CUDA")
    p.add_argument("--one-step", "--one_step", dest="one_step", action="store_true",
                   help="propagate an input through all layers in one step (default: one step per layer, as BindsNET)")
    p.add_argument("--data", dest="data", default=str(PROJECT_ROOT / "datasets"), help="data root")
    p.add_argument("--arch", choices=[m for m in list_models() if is_ann(m)],
                   help="expected architecture (required for a plain state dict)")
    p.add_argument("--percentile", type=float, default=99.9, help="percentile of each layer's activations used as lambda")
    p.add_argument("--eval_size", "--eval-size", dest="eval_size", type=int, help="test images to evaluate (default all)")
    p.add_argument("--dataset", help="data set (default: the checkpoint's)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the tqdm bars")
    return p


def _strip_prefix(state: dict) -> dict:
    """Drop DataParallel's ``module.`` from the original code's keys (``features.module.0.weight``)."""
    return {k.replace("module.", ""): v for k, v in state.items()}


def load_ann(path: str, arch: str | None, dataset: str | None, device: torch.device):
    """``(ann, arch, dataset)`` from a train.py run / checkpoint or a plain state dict."""
    raw, ckpt_path = read_checkpoint(path, device)
    if isinstance(raw, dict) and "config" in raw:
        saved_arch, saved_dataset = raw["config"]["arch"], raw["config"]["dataset"]
        if arch is not None and arch != saved_arch:
            raise CheckpointError(f"{ckpt_path} holds a {saved_arch!r} network, but --arch asks for {arch!r}")
        if dataset is not None and dataset != saved_dataset:
            raise CheckpointError(f"{ckpt_path} was trained on {saved_dataset!r}, but --dataset asks for {dataset!r}")
        if not is_ann(saved_arch):
            raise CheckpointError(f"{ckpt_path} holds the spiking net {saved_arch!r}; conversion needs an ANN trained "
                                  "with a bsnn-* recipe (e.g. python train.py --recipe bsnn-digits-fp)")
        ann, _ = model_from_checkpoint(raw, ckpt_path, device)
        return ann, saved_arch, saved_dataset
    if arch is None or dataset is None:
        raise CheckpointError(f"{ckpt_path} is a plain state dict: pass --arch and --dataset to say what it holds")
    ann = build_model({"arch": arch, "dataset": dataset})
    load_weights(ann, _strip_prefix(raw.get("state_dict", raw)), ckpt_path, f"--arch {arch} on {dataset}")
    return ann.to(device).eval(), arch, dataset


def main(args: argparse.Namespace) -> dict:
    """Run the conversion; returns the summary (also written to ``summary.json``)."""
    if args.gpu and not torch.cuda.is_available():
        raise CheckpointError("--gpu asked for CUDA but torch sees no GPU; leave out --gpu")
    device = torch.device("cuda" if args.gpu else "cpu")
    workers = (4 if args.gpu else 0) if args.n_workers < 0 else args.n_workers
    ann, arch, dataset = load_ann(args.model, args.arch, args.dataset, device)
    train_set, test_set, _ = build_datasets(dataset, args.data)
    out = Path(args.job_dir)
    out.mkdir(parents=True, exist_ok=True)

    norm = min(args.norm, len(train_set))
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(args.seed))[:norm]
    norm_loader = DataLoader(Subset(train_set, order.tolist()), batch_size=args.batch_size, num_workers=workers)
    norm_batches = (images.to(device) for images, _ in tqdm(norm_loader, desc="balancing", leave=False,
                                                           disable=not args.progress))
    scales = activation_scales(ann, norm_batches, norm, args.percentile)
    snn_net = convert(ann, scales, one_step=args.one_step)

    eval_size = len(test_set) if args.eval_size is None else min(args.eval_size, len(test_set))
    test_loader = DataLoader(Subset(test_set, range(eval_size)), batch_size=args.batch_size, num_workers=workers)
    snn_correct = torch.zeros(args.time, dtype=torch.long)
    ann_correct = 0
    with torch.no_grad():
        for images, labels in tqdm(test_loader, desc=f"simulating {args.time} steps", disable=not args.progress):
            images, labels = images.to(device), labels.to(device)
            ann_correct += int((ann(images).argmax(1) == labels).sum())
            snn_correct += accuracy_over_time(snn_net, images, labels, args.time).cpu()
    snn_acc = (snn_correct.double() / eval_size).tolist()
    ann_acc = ann_correct / eval_size

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["step", "snn_accuracy", "ann_accuracy"])
    writer.writerows([t + 1, a, ann_acc] for t, a in enumerate(snn_acc))
    atomic_write(out / args.results_file, lambda f: f.write(buf.getvalue().encode()))
    within = {pts: next((t + 1 for t, a in enumerate(snn_acc) if a >= ann_acc - pts / 100), None) for pts in (1, 2)}
    summary = dict(model=str(args.model), arch=arch, dataset=dataset, time=args.time, one_step=args.one_step,
                   percentile=args.percentile, norm_images=norm, eval_size=eval_size, ann_accuracy=ann_acc,
                   snn_accuracy_final=snn_acc[-1], best_snn_accuracy=max(snn_acc),
                   first_step_within_1_point=within[1], first_step_within_2_points=within[2], scales=scales)
    atomic_write(out / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    plots.plot_conversion(snn_acc, ann_acc, out / "accuracy_vs_time.png",
                          title=f"{arch} on {dataset}: converted SNN ({'one step' if args.one_step else 'layer delay'})")
    print(f"ANN {100 * ann_acc:.2f}%  SNN after {args.time} steps {100 * snn_acc[-1]:.2f}% "
          f"(within 1 point from step {within[1]}); results in {out}")
    return summary


def run(argv: list[str] | None = None) -> int:
    """Console entry point; user errors become one line on stderr (exit 2)."""
    args = get_args_parser().parse_args(argv)
    try:
        main(args)
    except (DatasetNotFoundError, ValueError) as err:  # CheckpointError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
