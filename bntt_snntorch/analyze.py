"""Analyse a trained run: gammas and early exit, spike rates, operation counts and energy.

    python -m bntt_snntorch.analyze RUN_DIR_OR_CHECKPOINT [--early-exit] [--energy] [--plots]
    python train.py --evaluate RUN_DIR_OR_CHECKPOINT [...]        # the same

With none of the three flags, all analyses run. Writes CSVs, ``summary.json``
and (``--plots``) PNGs into ``RUN_DIR/analysis`` (or ``--analysis-dir``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import encoding, plots
from .analysis import ENERGY_45NM, accuracy_per_step, count_operations, energy_table, exit_step, gamma_curves, mean_gamma_curve
from .analysis.energy import average_operations
from .analysis.early_exit import DEFAULT_EXIT_THRESHOLD
from .checkpoint import atomic_write
from .data import DatasetNotFoundError
from .runs import CheckpointError, load_run, run_datasets


def add_analysis_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """The analysis flags, shared by ``python -m bntt_snntorch.analyze`` and ``train.py --evaluate``."""
    g = p.add_argument_group("analysis")
    if positional:
        g.add_argument("run", help="run folder (uses best.pt, else last.pt) or checkpoint file")
    g.add_argument("--early-exit", action="store_true", help="gamma curves, accuracy per exit step, gamma-chosen exit")
    g.add_argument("--energy", action="store_true", help="spike rates, MAC/AC counts and energy per layer")
    g.add_argument("--plots", action="store_true", help="write PNG figures")
    g.add_argument("--exit-threshold", type=float, default=DEFAULT_EXIT_THRESHOLD,
                   help="exit at the first step whose layer-averaged BNTT gamma is below this")
    g.add_argument("--mac-pj", type=float, default=ENERGY_45NM["mac_pj"], help="energy of one MAC (pJ)")
    g.add_argument("--ac-pj", type=float, default=ENERGY_45NM["ac_pj"], help="energy of one accumulate (pJ)")
    g.add_argument("--analysis-dir", help="where to write (default RUN_DIR/analysis)")
    g.add_argument("--energy-batches", type=int, default=4, help="test batches used for spike rates and energy")


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


@torch.no_grad()
def _inference_seconds(model, x_seq, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x_seq)
        times.append(time.perf_counter() - start)
    return min(times)


def analyze(args: argparse.Namespace) -> dict:
    """Run the requested analyses of ``args.run``; returns the summary (also written as JSON)."""
    from .cli import resolve_device

    device = resolve_device(getattr(args, "device", "auto"))
    model, cfg, ckpt_path = load_run(args.run, device)
    every = not (args.early_exit or args.energy)
    out = Path(args.analysis_dir) if args.analysis_dir else ckpt_path.parent / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    data_dir = getattr(args, "data_dir", None) or cfg["data_dir"]
    _, test_set, _ = run_datasets(cfg, data_dir)
    loader = DataLoader(test_set, batch_size=cfg["batch_size"], shuffle=False, num_workers=0)
    T = cfg["num_steps"]
    seed = cfg.get("seed", 0) + 1

    def encoder():  # the same Poisson draws as the run's own test evaluation
        gen = torch.Generator(device).manual_seed(seed)
        return lambda x: encoding.encode(x, T, cfg["encode"], gen)

    max_batches = getattr(args, "max_batches", None)
    summary: dict = {"checkpoint": str(ckpt_path), "arch": cfg["arch"], "dataset": cfg["dataset"], "num_steps": T}

    if every or args.early_exit:
        curves = {k: v.cpu() for k, v in gamma_curves(model).items()}
        mean_curve = mean_gamma_curve(model).cpu()
        exit_at = exit_step(mean_curve, args.exit_threshold)
        accuracy = accuracy_per_step(model, loader, encoder(), device, max_batches)
        _write_csv(out / "gammas.csv", [{"layer": name, "step": t + 1, "mean_gamma": float(v)}
                                        for name, c in curves.items() for t, v in enumerate(c)])
        _write_csv(out / "accuracy_per_step.csv", [{"steps": t + 1, "accuracy": float(a), "mean_gamma": float(g)}
                                                   for t, (a, g) in enumerate(zip(accuracy, mean_curve))])
        x_seq = encoder()(next(iter(loader))[0].to(device))
        full_s, exit_s = _inference_seconds(model, x_seq), _inference_seconds(model, x_seq[:exit_at])
        summary["early_exit"] = {
            "exit_threshold": args.exit_threshold, "exit_steps": exit_at, "accuracy_full": float(accuracy[-1]),
            "accuracy_at_exit": float(accuracy[exit_at - 1]), "best_steps": int(accuracy.argmax()) + 1,
            "best_accuracy": float(accuracy.max()), "inference_speedup_at_exit": full_s / exit_s,
        }
        if args.plots:
            plots.plot_gamma_curves({k: v.tolist() for k, v in curves.items()}, mean_curve.tolist(), exit_at,
                                    args.exit_threshold, out / "gamma_over_time.png")
            plots.plot_accuracy_vs_steps(accuracy.tolist(), exit_at, out / "accuracy_vs_exit_step.png")

    if every or args.energy:
        encode = encoder()
        per_batch = [count_operations(model, encode(images.to(device)))
                     for _, (images, _) in zip(range(args.energy_batches), loader)]
        rows = energy_table(average_operations(per_batch), args.mac_pj, args.ac_pj)
        _write_csv(out / "energy.csv", rows)
        total = rows[-1]
        summary["energy"] = {"ann_uj": total["ann_pj"] / 1e6, "snn_uj": total["snn_pj"] / 1e6,
                             "snn_over_ann": total["snn_pj"] / total["ann_pj"], "mac_pj": args.mac_pj, "ac_pj": args.ac_pj,
                             "spike_rates": {r["name"]: r["output_rate"] for r in rows if r.get("output_rate") is not None}}
        if args.plots:
            plots.plot_spike_rates(rows, out / "spike_rates.png")
            plots.plot_energy(rows, out / "energy.png")

    atomic_write(out / "summary.json", lambda f: f.write(json.dumps(summary, indent=2).encode()))
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict, out: Path) -> None:
    ee = summary.get("early_exit")
    if ee:
        print(f"early exit: mean gamma below {ee['exit_threshold']:g} after {ee['exit_steps']} of {summary['num_steps']} "
              f"steps -> accuracy {100 * ee['accuracy_at_exit']:.2f}% (all steps {100 * ee['accuracy_full']:.2f}%), "
              f"inference {ee['inference_speedup_at_exit']:.2f}x faster")
    en = summary.get("energy")
    if en:
        print(f"energy per image: ANN {en['ann_uj']:.3f} uJ, SNN {en['snn_uj']:.3f} uJ ({en['snn_over_ann']:.2f}x)")
    print(f"analysis written to {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_analysis_args(p)
    p.add_argument("--data-dir", "--data_dir", dest="data_dir", help="data root (default: the run's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-batches", "--max_batches", dest="max_batches", type=int, help="test batches for accuracy")
    args = p.parse_args(argv)
    try:
        analyze(args)
    except (CheckpointError, DatasetNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
