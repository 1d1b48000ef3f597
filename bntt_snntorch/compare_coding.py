"""Rate vs direct coding side by side (Kim et al. 2022): accuracy, FGSM / PGD robustness, spikes, energy.

    python -m bntt_snntorch.compare_coding --dataset digits --arch mlp --T 4 8 16 --num_epochs 30

For each coding (Poisson rate ``p``, direct ``d``) and each T it trains a
model with ``train.py``'s recipe ``rate-vs-direct`` into
``OUTPUT/<coding>-T<T>/`` (or reuses the ``best.pt`` already there), then
writes ``OUTPUT/comparison.csv`` and ``.md`` (clean, FGSM and PGD accuracy per
eps, mean spike rate, energy per image) and the plots ``accuracy_vs_T.png``
and ``accuracy_vs_eps.png``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import encoding
from .analysis import count_operations, energy_table
from .analysis.robustness import PixelBox, robust_accuracy
from .cli import get_args_parser as train_parser
from .cli import main as train_main
from .data import DatasetNotFoundError, dataset_info
from .runs import CheckpointError, load_run, run_datasets
from .utils import tune_cpu_allocator

CODINGS = {"p": "rate (Poisson)", "d": "direct"}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--arch", default="mlp", choices=["mlp", "vgg5", "vgg9"],
                   help="that work's net (on 8x8 digits its VGGs do not fire at initialisation: use mlp)")
    p.add_argument("--T", nargs="+", type=int, default=[4, 8], help="time steps to compare")
    p.add_argument("--num_epochs", "--num-epochs", dest="num_epochs", type=int, help="epochs (recipe: 100)")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, help="batch (recipe: 128)")
    p.add_argument("--leak_mem", "--leak-mem", dest="leak_mem", type=float, help="leak (recipe: 0.5)")
    p.add_argument("--eps", nargs="+", type=float, default=[0.0, 0.02, 0.05, 0.1], help="attack budgets, pixel units")
    p.add_argument("--pgd-steps", type=int, default=7)
    p.add_argument("--draws", type=int, default=4, help="Poisson draws averaged per attack gradient")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--output-dir", default="runs/compare-coding")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batches", type=int, help="test batches to attack (all by default)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def _train_or_load(args, coding: str, steps: int) -> Path:
    run = Path(args.output_dir) / f"{coding}-T{steps}"
    if not (run / "best.pt").exists():
        argv = ["--recipe", "rate-vs-direct", "--dataset", args.dataset, "--arch", args.arch, "--encode", coding,
                "--T", str(steps), "--seed", str(args.seed), "--output-dir", str(run), "--num_workers", "0"]
        for flag, value in (("--num_epochs", args.num_epochs), ("--batch_size", args.batch_size),
                            ("--leak_mem", args.leak_mem), ("--data-dir", args.data_dir)):
            if value is not None:
                argv += [flag, str(value)]
        train_main(train_parser().parse_args(argv + ([] if args.progress else ["--no-progress"])))
    return run


def evaluate_run(run: Path, args, device) -> dict:
    """Clean / FGSM / PGD accuracy, spike rate and energy of one trained run."""
    model, cfg, _ = load_run(run, device)
    info = dataset_info(cfg["dataset"])
    _, test_set, _ = run_datasets(cfg, args.data_dir)
    loader = DataLoader(test_set, batch_size=256, shuffle=False)
    box = PixelBox(info.mean, info.std, device)
    steps, coding = cfg["num_steps"], cfg["encode"]
    common = dict(device=device, draws=args.draws if coding == "p" else 1, seed=args.seed, max_batches=args.max_batches)
    fgsm_acc = robust_accuracy(model, loader, coding, steps, box, args.eps, "fgsm", **common)
    pgd_acc = robust_accuracy(model, loader, coding, steps, box, args.eps, "pgd", pgd_steps=args.pgd_steps, **common)
    images = next(iter(loader))[0].to(device)
    gen = torch.Generator(device).manual_seed(args.seed)
    rows = energy_table(count_operations(model, encoding.encode(images, steps, coding, gen)))
    rates = [r["output_rate"] for r in rows if r.get("output_rate") is not None]
    row = {"coding": CODINGS[coding], "T": steps, "clean_acc": fgsm_acc[0.0]}
    for eps in args.eps:
        row[f"fgsm_{eps:g}"] = fgsm_acc[eps]
    for eps in args.eps:
        row[f"pgd_{eps:g}"] = pgd_acc[eps]
    row.update(spike_rate=sum(rates) / len(rates), snn_energy_uj=rows[-1]["snn_pj"] / 1e6,
               ann_energy_uj=rows[-1]["ann_pj"] / 1e6)
    return row


def _write(rows: list[dict], out: Path, args) -> None:
    with open(out / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    keys = [k for k in rows[0] if not k.endswith("_0")]  # eps 0 repeats clean_acc

    def fmt(key, value):
        if key.endswith("acc") or key.startswith(("fgsm_", "pgd_")) or key == "spike_rate":
            return f"{100 * value:.1f}"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = [f"# Rate vs direct coding: {args.arch} on {args.dataset}", "",
             f"Accuracies and spike rates in %, eps in pixel units ([0, 1] scale); PGD {args.pgd_steps} steps, "
             f"random start; Poisson attacks average {args.draws} draws per gradient. Energy in uJ per image at "
             "45 nm (4.6 pJ/MAC, 0.9 pJ/AC); spike rate = mean over spiking layers.", "",
             f"Command: `python -m bntt_snntorch.compare_coding {' '.join(sys.argv[1:])}`", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(k, r[k]) for k in keys) + " |" for r in rows]
    (out / "comparison.md").write_text("\n".join(lines) + "\n")

    from . import plots

    plots.plot_coding_comparison(rows, args.eps, out / "accuracy_vs_T.png", out / "accuracy_vs_eps.png")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    args.eps = sorted({0.0, *args.eps})  # eps 0 is the clean accuracy
    tune_cpu_allocator()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        rows = [evaluate_run(_train_or_load(args, coding, steps), args, device) for coding in CODINGS for steps in args.T]
    except (DatasetNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _write(rows, out, args)
    print((out / "comparison.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
