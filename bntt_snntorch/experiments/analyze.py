"""Analyse a trained run: BNTT gammas and early exit, spike rates, operation counts and energy.

``analyze_run(run, AnalysisOptions(...)) -> summary``; what ``python -m bntt_snntorch analyze``
runs. Writes CSVs, ``summary.json`` and (``plots``) PNGs into ``<run>/analysis`` (or
``analysis_dir``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
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


@dataclass
class AnalysisOptions:
    """What :func:`analyze_run` does (both analyses unless one is asked for) and where."""

    early_exit: bool = False  # gamma curves, accuracy per exit step, the gamma-chosen exit
    energy: bool = False  # spike rates, MAC/AC counts and energy per layer
    plots: bool = False  # write PNG figures
    exit_threshold: float = DEFAULT_EXIT_THRESHOLD  # exit at the first step whose mean BNTT gamma is below it
    mac_pj: float = ENERGY_45NM["mac_pj"]  # energy of one multiply-accumulate (pJ)
    ac_pj: float = ENERGY_45NM["ac_pj"]  # energy of one accumulate (pJ)
    analysis_dir: str | None = None  # default: <run>/analysis
    energy_batches: int = 4  # test batches for spike rates and energy
    data_dir: str | None = None  # default: the run's
    device: str = "auto"
    max_batches: int | None = None  # test batches for accuracy (all by default)


def analyze_run(run: str | Path, options: AnalysisOptions | None = None) -> dict:
    """Analyse the run folder or checkpoint ``run``; writes the files and returns the summary."""
    options = options or AnalysisOptions()
    device = resolve_device(options.device)
    model, cfg, ckpt_path = load_run(run, device)
    out = Path(options.analysis_dir) if options.analysis_dir else ckpt_path.parent / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    _, test_set, _ = run_datasets(cfg, options.data_dir)
    loader = DataLoader(test_set, batch_size=cfg.batch_size, shuffle=False, num_workers=0)

    def encoder():  # the same Poisson draws as the run's own test evaluation
        gen = torch.Generator(device).manual_seed(cfg.eval_seed)
        return lambda x: encoding.encode(x, cfg.num_steps, cfg.encode, gen)

    summary: dict = {"checkpoint": str(ckpt_path), "arch": cfg.arch, "dataset": cfg.dataset, "num_steps": cfg.num_steps}
    every = not (options.early_exit or options.energy)
    if every or options.early_exit:
        summary["early_exit"] = _early_exit(model, loader, encoder, device, options, out)
    if every or options.energy:
        summary["energy"] = _energy(model, loader, encoder(), device, options, out)
    write_json(out / "summary.json", summary)
    _print_summary(summary, out)
    return summary


def _early_exit(model, loader, encoder, device, options: AnalysisOptions, out: Path) -> dict:
    """Gamma curves, accuracy after every exit step and the gamma rule's exit; ``gammas.csv``,
    ``accuracy_per_step.csv`` and (plots) two PNGs."""
    curves = {k: v.cpu() for k, v in gamma_curves(model).items()}
    mean_curve = mean_gamma_curve(model).cpu()
    exit_at = exit_step(mean_curve, options.exit_threshold)
    accuracy = accuracy_per_step(model, loader, encoder(), device, options.max_batches)
    write_csv(
        out / "gammas.csv",
        [{"layer": name, "step": t + 1, "mean_gamma": float(v)} for name, c in curves.items() for t, v in enumerate(c)],
    )
    write_csv(
        out / "accuracy_per_step.csv",
        [
            {"num_steps": t + 1, "accuracy": float(a), "mean_gamma": float(g)}
            for t, (a, g) in enumerate(zip(accuracy, mean_curve))
        ],
    )
    speedup = exit_speedup(model, encoder()(next(iter(loader))[0].to(device)), exit_at)
    if options.plots:
        plot_gamma_curves(
            {k: v.tolist() for k, v in curves.items()},
            mean_curve.tolist(),
            exit_at,
            options.exit_threshold,
            out / "gamma_over_time.png",
        )
        plot_accuracy_vs_steps(accuracy.tolist(), exit_at, out / "accuracy_vs_exit_step.png")
    return {
        "exit_threshold": options.exit_threshold,
        "exit_steps": exit_at,
        "accuracy_full": float(accuracy[-1]),
        "accuracy_at_exit": float(accuracy[exit_at - 1]),
        "best_steps": int(accuracy.argmax()) + 1,
        "best_accuracy": float(accuracy.max()),
        "inference_speedup_at_exit": speedup,
    }


def _energy(model, loader, encode, device, options: AnalysisOptions, out: Path) -> dict:
    """Spike rates, operations and energy per layer averaged over ``energy_batches``; ``energy.csv``."""
    per_batch = [
        count_operations(model, encode(images.to(device)))
        for _, (images, _) in zip(range(options.energy_batches), loader)
    ]
    rows = energy_table(average_operations(per_batch), options.mac_pj, options.ac_pj)
    write_csv(out / "energy.csv", rows)
    if options.plots:
        plot_spike_rates(rows, out / "spike_rates.png")
        plot_energy(rows, out / "energy.png")
    total = rows[-1]
    return {
        "ann_uj": total["ann_pj"] / 1e6,
        "snn_uj": total["snn_pj"] / 1e6,
        "snn_over_ann": total["snn_pj"] / total["ann_pj"],
        "mac_pj": options.mac_pj,
        "ac_pj": options.ac_pj,
        "spike_rates": {r["name"]: r["output_rate"] for r in rows if r.get("output_rate") is not None},
    }


@torch.no_grad()
def exit_speedup(model, x_seq: torch.Tensor, exit_at: int, repeats: int = 5, clock=time.perf_counter) -> float | None:
    """How much faster inference on the first ``exit_at`` steps of ``x_seq`` ``(T, B, ...)`` is than on
    all T: the median of ``repeats`` timed full passes over the median of as many exit passes, alternated,
    after one untimed warm-up of each. None where the exit is the last step: no work is saved, and
    timing the same work twice would only measure noise."""
    if exit_at >= len(x_seq):
        return None
    full_seconds, exit_seconds = [], []
    model(x_seq), model(x_seq[:exit_at])  # warm-up: allocator, kernels, caches
    for _ in range(repeats):
        for inputs, seconds in ((x_seq, full_seconds), (x_seq[:exit_at], exit_seconds)):
            start = clock()
            model(inputs)
            seconds.append(clock() - start)
    return statistics.median(full_seconds) / statistics.median(exit_seconds)


def _print_summary(summary: dict, out: Path) -> None:
    ee = summary.get("early_exit")
    if ee:
        print(
            f"early exit: mean gamma below {ee['exit_threshold']:g} after {ee['exit_steps']} of {summary['num_steps']} "
            f"steps -> accuracy {100 * ee['accuracy_at_exit']:.2f}% (all steps {100 * ee['accuracy_full']:.2f}%), "
            + (
                "no step saved"
                if ee["inference_speedup_at_exit"] is None
                else f"inference {ee['inference_speedup_at_exit']:.2f}x faster (median of 5 timed passes)"
            )
        )
    en = summary.get("energy")
    if en:
        print(f"energy per image: ANN {en['ann_uj']:.3f} uJ, SNN {en['snn_uj']:.3f} uJ ({en['snn_over_ann']:.2f}x)")
    print(f"analysis written to {out}")
