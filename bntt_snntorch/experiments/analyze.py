"""Analyse a trained run: BNTT gammas and early exit, spike rates, operation counts and energy, and
(``neurobench``) NeuroBench's metrics beside ours.

``analyze_run(run, AnalysisOptions(...)) -> summary``; what ``python -m bntt_snntorch analyze``
runs. Writes CSVs, ``summary.json``, ``summary.md`` and (``plots``) PNGs into ``<run>/analysis`` (or
``analysis_dir``); with ``neurobench`` also ``neurobench.json``.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

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
from ..files import write_csv, write_json, write_text
from ..plots import plot_accuracy_vs_steps, plot_energy, plot_gamma_curves, plot_spike_rates
from ..training import ConfigError, load_run, resolve_device
from ..training.runs import run_datasets


@dataclass
class AnalysisOptions:
    """What :func:`analyze_run` does (both analyses unless one is asked for) and where."""

    early_exit: bool = False  # gamma curves, accuracy per exit step, the gamma-chosen exit
    energy: bool = False  # spike rates, MAC/AC counts and energy per layer
    plots: bool = False  # write PNG figures
    neurobench: bool = False  # also NeuroBench's metrics, beside ours (needs the [neurobench] extra)
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
    if options.neurobench and importlib.util.find_spec("neurobench") is None:
        raise ConfigError('--neurobench needs the neurobench package: pip install "bntt_snntorch[neurobench]"')
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
    comparison = None
    if options.neurobench:
        summary["neurobench"], comparison = _neurobench(model, test_set, cfg.batch_size, encoder, device, options, out)
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", summary_markdown(summary, comparison))
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
    """Spike rates, operations and energy per layer, per image over the first ``energy_batches`` test batches
    (weighted by their sizes, as the NeuroBench comparison weighs its batches); ``energy.csv``."""
    batches = [images for _, (images, _) in zip(range(options.energy_batches), loader)]
    per_batch = [count_operations(model, encode(images.to(device))) for images in batches]
    sizes = [len(images) for images in batches]
    rows = energy_table(average_operations(per_batch, sizes), options.mac_pj, options.ac_pj)
    write_csv(out / "energy.csv", rows)
    if options.plots:
        plot_spike_rates(rows, out / "spike_rates.png")
        plot_energy(rows, out / "energy.png")
    total = rows[-1]
    return {
        "images": sum(sizes),
        "ann_uj": total["ann_pj"] / 1e6,
        "snn_uj": total["snn_pj"] / 1e6,
        "snn_over_ann": total["snn_pj"] / total["ann_pj"],
        "mac_pj": options.mac_pj,
        "ac_pj": options.ac_pj,
        "spike_rates": {r["name"]: r["output_rate"] for r in rows if r.get("output_rate") is not None},
    }


def _neurobench(model, test_set, batch_size: int, encoder, device, options: AnalysisOptions, out: Path):
    """NeuroBench's ``Benchmark`` on the test set (the first ``max_batches`` batches, if set) and our
    counts on the same Poisson draws; ``neurobench.json``. Returns (its headline figures, the per-layer
    comparison rows)."""
    from ..analysis.neurobench import compare_with_ours, neurobench_metrics

    if options.max_batches is not None:
        test_set = Subset(test_set, range(min(len(test_set), options.max_batches * batch_size)))
    loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, num_workers=0)
    results = neurobench_metrics(model, loader, encoder(), device)
    encode = encoder()
    ours = [count_operations(model, encode(images.to(device))) for images, _ in loader]
    comparison = compare_with_ours(results, average_operations(ours, [len(images) for images, _ in loader]))
    write_json(out / "neurobench.json", {"samples": len(test_set), "neurobench": results, "comparison": comparison})
    total = comparison[-1]
    headline = {
        "samples": len(test_set),
        "accuracy": results["ClassificationAccuracy"],
        "activation_sparsity": results["ActivationSparsity"],
        "effective_macs": results["SynapticOperations"]["Effective_MACs"],
        "effective_acs": results["SynapticOperations"]["Effective_ACs"],
        "dense_ops": results["SynapticOperations"]["Dense"],
        "membrane_updates": results["MembraneUpdates"],
        "footprint_bytes": results["Footprint"],
        "connection_sparsity": results["ConnectionSparsity"],
        "parameters": results["ParameterCount"],
        "ours_effective_ops": total["ours_effective_ops"],
        "ours_activation_sparsity": total["ours_activation_sparsity"],
    }
    return headline, comparison


def summary_markdown(summary: dict, comparison: list[dict] | None = None) -> str:
    """``summary.md``: the analysis in a few lines, and NeuroBench's figures beside ours per layer."""
    lines = [f"# Analysis of {summary['arch']} on {summary['dataset']} (T={summary['num_steps']})", ""]
    ee, en, nb = summary.get("early_exit"), summary.get("energy"), summary.get("neurobench")
    if ee:
        lines.append(
            f"- Early exit: mean BNTT gamma below {ee['exit_threshold']:g} after {ee['exit_steps']} of "
            f"{summary['num_steps']} steps; accuracy there {100 * ee['accuracy_at_exit']:.2f} % "
            f"(all steps {100 * ee['accuracy_full']:.2f} %)."
        )
    if en:
        lines.append(
            f"- Energy per image (rate estimate over {en['images']} test images, {en['mac_pj']:g} pJ / MAC, "
            f"{en['ac_pj']:g} pJ / AC): ANN "
            f"{en['ann_uj']:.3f} uJ, SNN {en['snn_uj']:.3f} uJ ({en['snn_over_ann']:.2f}x)."
        )
    if nb:
        ours_accuracy = f"{100 * ee['accuracy_full']:.2f} %" if ee else ""
        lines += [
            "",
            f"## NeuroBench (its own Benchmark, {nb['samples']} test images)",
            "",
            "| metric | NeuroBench | ours |",
            "|---|---|---|",
            f"| classification accuracy | {100 * nb['accuracy']:.2f} % | {ours_accuracy} |",
            f"| activation sparsity | {nb['activation_sparsity']:.4f} | {nb['ours_activation_sparsity']:.4f} |",
            f"| effective synaptic ops / image | {nb['effective_macs'] + nb['effective_acs']:,.1f} "
            f"({nb['effective_macs']:,.1f} MACs + {nb['effective_acs']:,.1f} ACs) | {nb['ours_effective_ops']:,.1f} |",
            f"| dense synaptic ops / image | {nb['dense_ops']:,.0f} | |",
            f"| membrane updates / image | {nb['membrane_updates']:,.1f} | |",
            f"| footprint | {nb['footprint_bytes']:,} bytes | |",
            f"| connection sparsity | {nb['connection_sparsity']:.4f} | |",
            f"| parameters | {nb['parameters']:,} | |",
        ]
    if comparison:
        lines += [
            "",
            "Per layer (operations per image over all steps; ours: exact count, and the paper's rate estimate):",
            "",
            "| layer | NeuroBench ops (kind) | ours ops (kind) | ours rate estimate | NeuroBench sparsity | ours "
            "sparsity | why the kinds differ |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in comparison[:-1]:
            sparsity = [
                f"{v:.4f}" if v is not None else ""
                for v in (r["neurobench_activation_sparsity"], r["ours_activation_sparsity"])
            ]
            lines.append(
                f"| {r['layer']} | {r['neurobench_effective_ops']:,.1f} ({r['neurobench_kind']}) | "
                f"{r['ours_effective_ops']:,.1f} ({r['ours_kind']}) | {r['ours_rate_estimate']:,.1f} | "
                f"{sparsity[0]} | {sparsity[1]} | {r['note']} |"
            )
        lines += [
            "",
            "The rate estimate (MACs a step x input rate x T) counts the kernel taps on a convolution's zero "
            "padding too; the exact counts leave them out, as NeuroBench does.",
        ]
    return "\n".join(lines) + "\n"


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
    nb = summary.get("neurobench")
    if nb:
        print(
            f"NeuroBench: accuracy {100 * nb['accuracy']:.2f}%, activation sparsity {nb['activation_sparsity']:.4f}, "
            f"{nb['effective_acs']:,.0f} ACs + {nb['effective_macs']:,.0f} MACs per image "
            f"(ours: {nb['ours_effective_ops']:,.0f} ops), membrane updates {nb['membrane_updates']:,.0f}"
        )
    print(f"analysis written to {out}")
