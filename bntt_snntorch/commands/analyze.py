"""Analyse a trained run: gammas and early exit, spike rates, operation counts and energy.

    python -m bntt_snntorch.analyze RUN_DIR_OR_CHECKPOINT [--early-exit] [--energy] [--plots]
    python train.py --evaluate RUN_DIR_OR_CHECKPOINT [...]        # the same

With none of the three flags, all analyses run. Writes CSVs, ``summary.json``
and (``--plots``) PNGs into ``RUN_DIR/analysis`` (or ``--analysis-dir``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import encoding
from ..analysis import (
    ENERGY_45NM,
    accuracy_per_step,
    count_operations,
    energy_table,
    exit_step,
    gamma_curves,
    mean_gamma_curve,
)
from ..analysis.early_exit import DEFAULT_EXIT_THRESHOLD
from ..analysis.energy import average_operations
from ..files import write_csv, write_json
from ..plots import plot_accuracy_vs_steps, plot_energy, plot_gamma_curves, plot_spike_rates
from ..training import load_run, resolve_device
from ..training.runs import run_datasets
from .common import add_device_flag, add_flag, exit_status


def add_analysis_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """The analysis flags, shared by ``python -m bntt_snntorch.analyze`` and ``train.py --evaluate``."""
    g = p.add_argument_group("analysis")
    if positional:
        g.add_argument("run", help="run folder (uses best.pt, else last.pt) or checkpoint file")
    g.add_argument("--early-exit", action="store_true", help="gamma curves, accuracy per exit step, gamma-chosen exit")
    g.add_argument("--energy", action="store_true", help="spike rates, MAC/AC counts and energy per layer")
    g.add_argument("--plots", action="store_true", help="write PNG figures")
    g.add_argument(
        "--exit-threshold",
        type=float,
        default=DEFAULT_EXIT_THRESHOLD,
        help="exit at the first step whose layer-averaged BNTT gamma is below this",
    )
    g.add_argument("--mac-pj", type=float, default=ENERGY_45NM["mac_pj"], help="energy of one MAC (pJ)")
    g.add_argument("--ac-pj", type=float, default=ENERGY_45NM["ac_pj"], help="energy of one accumulate (pJ)")
    g.add_argument("--analysis-dir", help="where to write (default RUN_DIR/analysis)")
    g.add_argument("--energy-batches", type=int, default=4, help="test batches used for spike rates and energy")


@torch.no_grad()
def _inference_seconds(model, x_seq, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x_seq)
        times.append(time.perf_counter() - start)
    return min(times)


def analyze(
    run: str | Path,
    *,
    early_exit: bool = False,
    energy: bool = False,
    plots: bool = False,
    exit_threshold: float = DEFAULT_EXIT_THRESHOLD,
    mac_pj: float = ENERGY_45NM["mac_pj"],
    ac_pj: float = ENERGY_45NM["ac_pj"],
    analysis_dir: str | Path | None = None,
    energy_batches: int = 4,
    data_dir: str | None = None,
    device: str = "auto",
    max_batches: int | None = None,
) -> dict:
    """Analyse the run folder or checkpoint ``run`` (both analyses unless one is asked for); writes CSVs,
    ``summary.json`` and, with ``plots``, PNGs into ``analysis_dir`` (default ``<run>/analysis``).
    Returns the summary."""
    device = resolve_device(device)
    model, cfg, ckpt_path = load_run(run, device)
    every = not (early_exit or energy)
    out = Path(analysis_dir) if analysis_dir else ckpt_path.parent / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    _, test_set, _ = run_datasets(cfg, data_dir)
    loader = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, num_workers=0)
    T = cfg.num_steps

    def encoder():  # the same Poisson draws as the run's own test evaluation
        gen = torch.Generator(device).manual_seed(cfg.eval_seed)
        return lambda x: encoding.encode(x, T, cfg.encode, gen)

    summary: dict = {"checkpoint": str(ckpt_path), "arch": cfg.arch, "dataset": cfg.dataset, "num_steps": T}

    if every or early_exit:
        curves = {k: v.cpu() for k, v in gamma_curves(model).items()}
        mean_curve = mean_gamma_curve(model).cpu()
        exit_at = exit_step(mean_curve, exit_threshold)
        accuracy = accuracy_per_step(model, loader, encoder(), device, max_batches)
        write_csv(
            out / "gammas.csv",
            [
                {"layer": name, "step": t + 1, "mean_gamma": float(v)}
                for name, c in curves.items()
                for t, v in enumerate(c)
            ],
        )
        write_csv(
            out / "accuracy_per_step.csv",
            [
                {"steps": t + 1, "accuracy": float(a), "mean_gamma": float(g)}
                for t, (a, g) in enumerate(zip(accuracy, mean_curve))
            ],
        )
        x_seq = encoder()(next(iter(loader))[0].to(device))
        full_s, exit_s = _inference_seconds(model, x_seq), _inference_seconds(model, x_seq[:exit_at])
        summary["early_exit"] = {
            "exit_threshold": exit_threshold,
            "exit_steps": exit_at,
            "accuracy_full": float(accuracy[-1]),
            "accuracy_at_exit": float(accuracy[exit_at - 1]),
            "best_steps": int(accuracy.argmax()) + 1,
            "best_accuracy": float(accuracy.max()),
            "inference_speedup_at_exit": full_s / exit_s,
        }
        if plots:
            plot_gamma_curves(
                {k: v.tolist() for k, v in curves.items()},
                mean_curve.tolist(),
                exit_at,
                exit_threshold,
                out / "gamma_over_time.png",
            )
            plot_accuracy_vs_steps(accuracy.tolist(), exit_at, out / "accuracy_vs_exit_step.png")

    if every or energy:
        encode = encoder()
        per_batch = [
            count_operations(model, encode(images.to(device))) for _, (images, _) in zip(range(energy_batches), loader)
        ]
        rows = energy_table(average_operations(per_batch), mac_pj, ac_pj)
        write_csv(out / "energy.csv", rows)
        total = rows[-1]
        summary["energy"] = {
            "ann_uj": total["ann_pj"] / 1e6,
            "snn_uj": total["snn_pj"] / 1e6,
            "snn_over_ann": total["snn_pj"] / total["ann_pj"],
            "mac_pj": mac_pj,
            "ac_pj": ac_pj,
            "spike_rates": {r["name"]: r["output_rate"] for r in rows if r.get("output_rate") is not None},
        }
        if plots:
            plot_spike_rates(rows, out / "spike_rates.png")
            plot_energy(rows, out / "energy.png")

    write_json(out / "summary.json", summary)
    _print_summary(summary, out)
    return summary


def analyze_from_args(args: argparse.Namespace, run: str) -> dict:
    """:func:`analyze` with the flags of :func:`add_analysis_args` (and ``--data-dir``, ``--device``,
    ``--max-batches``)."""
    return analyze(
        run,
        early_exit=args.early_exit,
        energy=args.energy,
        plots=args.plots,
        exit_threshold=args.exit_threshold,
        mac_pj=args.mac_pj,
        ac_pj=args.ac_pj,
        analysis_dir=args.analysis_dir,
        energy_batches=args.energy_batches,
        data_dir=args.data_dir,
        **({} if args.device is None else {"device": args.device}),  # train.py --evaluate leaves it unset
        max_batches=args.max_batches,
    )


def _print_summary(summary: dict, out: Path) -> None:
    ee = summary.get("early_exit")
    if ee:
        print(
            f"early exit: mean gamma below {ee['exit_threshold']:g} after {ee['exit_steps']} of {summary['num_steps']} "
            f"steps -> accuracy {100 * ee['accuracy_at_exit']:.2f}% (all steps {100 * ee['accuracy_full']:.2f}%), "
            f"inference {ee['inference_speedup_at_exit']:.2f}x faster"
        )
    en = summary.get("energy")
    if en:
        print(f"energy per image: ANN {en['ann_uj']:.3f} uJ, SNN {en['snn_uj']:.3f} uJ ({en['snn_over_ann']:.2f}x)")
    print(f"analysis written to {out}")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bntt_snntorch.analyze",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_analysis_args(p)
    add_flag(p, "--data-dir", help="data root (default: the run's)")
    add_device_flag(p)
    add_flag(p, "--max-batches", type=int, help="test batches for accuracy")
    return p


def main(args: argparse.Namespace) -> dict:
    """Analyse as the parsed flags say; returns the summary."""
    return analyze_from_args(args, args.run)


def run(argv: list[str] | None = None) -> int:
    """Console entry point; exit status."""
    args = get_args_parser().parse_args(argv)
    return exit_status(lambda: main(args))


if __name__ == "__main__":
    sys.exit(run())
