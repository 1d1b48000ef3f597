"""Is BNTT worth it? Temporal normalisation variants side by side, same recipe, same seeds.

``compare_norms(NormStudyOptions(...)) -> table``; what ``python -m bntt_snntorch compare-norms``
runs. Trains (or reuses) ``OUTPUT/<variant>-seed<s>`` for every variant asked for (a registered norm,
or a neuron that normalises its membrane: :data:`NEURON_VARIANTS`) and seed with the data set's recipe,
then measures test accuracy after every exit step 1..T (``forward_steps``), spike rate and energy
(45 nm) and training throughput. Writes ``comparison.md`` / ``.csv`` (mean ± std over seeds),
``accuracy_per_step.csv``, ``accuracy_vs_step.png`` and ``gammas.png`` (BNTT's mean gamma per step,
TEBN's per-step scale, TAB's ``p_t^2 * weight_t``).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import encoding
from ..accumulated_norm import TemporalAccumulatedBatchNorm1d, TemporalAccumulatedBatchNorm2d
from ..analysis import accuracy_per_step, count_operations, energy_table, exit_step, mean_gamma_curve
from ..analysis.early_exit import DEFAULT_EXIT_THRESHOLD
from ..files import write_csv, write_text
from ..plots import plot_norm_comparison
from ..temporal_norm import NORM_REGISTRY, TemporalEffectiveBatchNorm1d, TemporalEffectiveBatchNorm2d, norm_info
from ..training import TrainConfig, load_run, resolve_device, train_or_resume
from ..training.runs import run_datasets
from .command_line import command_line

#: Study variants that are a neuron rather than a norm: name -> (the synapse's norm, the neuron, its label).
#: MPBN as its authors built it: a batch norm over the T*B batch after each synapse, and one on the membrane.
NEURON_VARIANTS = {"mpbn": ("bn", "mpbn", "MPBN (BN over T*B + membrane BN)")}


def study_variants() -> list[str]:
    """What ``--norms`` may name: the registered norms, then :data:`NEURON_VARIANTS`."""
    return [*NORM_REGISTRY.in_order(), *NEURON_VARIANTS]


def _variant_label(variant: str) -> str:
    return NEURON_VARIANTS[variant][2] if variant in NEURON_VARIANTS else norm_info(variant).label


@dataclass
class NormStudyOptions:
    """What :func:`compare_norms` trains and measures."""

    dataset: str = "digits"
    recipe: str | None = None  # default: the data set's (a finished run of another recipe is refused)
    norms: tuple = field(default_factory=lambda: tuple(study_variants()))  # variants to compare (study_variants())
    seeds: int = 3  # seeds 0..N-1 per norm
    num_epochs: int | None = None  # default: the recipe's
    output_dir: str | None = None  # default: runs/norm-study-<dataset>
    max_batches: int | None = None  # batches per epoch and test batches (short runs)
    energy_batches: int = 4  # test batches for spike rates and energy
    data_dir: str | None = None
    device: str = "auto"
    progress: bool = True


def compare_norms(options: NormStudyOptions | None = None) -> list[dict]:
    """Train (or reuse) every norm and seed, measure, and write the study; returns the table rows."""
    o = options or NormStudyOptions()
    device = resolve_device(o.device)
    out = Path(o.output_dir or f"runs/norm-study-{o.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    runs = [
        measure_run(_train_or_reuse(o, variant, seed, out), o, device, variant)
        for variant in o.norms
        for seed in range(o.seeds)
    ]
    table = summarize(runs)
    _write(table, runs, out, o, command_line("compare-norms", _with_output(o, out)))
    print((out / "comparison.md").read_text())
    return table


def _with_output(o: NormStudyOptions, out: Path) -> NormStudyOptions:
    return NormStudyOptions(**{**vars(o), "output_dir": str(out)})


def _train_or_reuse(o: NormStudyOptions, variant: str, seed: int, out: Path) -> Path:
    run = out / f"{variant}-seed{seed}"
    norm, neuron, _ = NEURON_VARIANTS.get(variant, (variant, None, None))
    return train_or_resume(
        TrainConfig.from_recipe(
            o.recipe,
            dataset=o.dataset,
            norm=norm,
            neuron=neuron,
            seed=seed,
            output_dir=str(run),
            num_epochs=o.num_epochs,
            data_dir=o.data_dir,
            device=o.device,
            max_batches=o.max_batches,
            progress=o.progress,
        )
    )


def measure_run(run: Path, o: NormStudyOptions, device, variant: str | None = None) -> dict:
    """Accuracy per exit step, spike rate, energy, throughput and per-step gains of one trained run
    (the last epoch's weights, as the table reports the final accuracy); ``variant``: its study variant
    (default: its norm)."""
    model, cfg, _ = load_run(run / "last.pt", device)
    _, test_set, _ = run_datasets(cfg, o.data_dir, progress=False)
    loader = DataLoader(test_set, batch_size=256, shuffle=False)
    gen = torch.Generator(device).manual_seed(cfg.eval_seed)
    accuracy = accuracy_per_step(
        model, loader, lambda x: encoding.encode(x, cfg.num_steps, cfg.encode, gen), device, o.max_batches
    )
    gen = torch.Generator(device).manual_seed(cfg.eval_seed)
    ops = [
        count_operations(model, encoding.encode(images.to(device), cfg.num_steps, cfg.encode, gen))
        for _, (images, _) in zip(range(o.energy_batches), loader)
    ]
    totals = [energy_table(op)[-1] for op in ops]
    rates = [op.output_rate for layer_ops in ops for op in layer_ops if op.output_rate is not None]
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    per_step = (TemporalEffectiveBatchNorm1d, TemporalEffectiveBatchNorm2d, TemporalAccumulatedBatchNorm1d,
                TemporalAccumulatedBatchNorm2d)  # fmt: skip
    scales = [m.gammas.mean(1).cpu() for m in model.modules() if isinstance(m, per_step)]
    gains = mean_gamma_curve(model).cpu() if cfg.norm == "bntt" else torch.stack(scales).mean(0) if scales else None
    return dict(
        norm=variant or cfg.norm,
        seed=cfg.seed,
        accuracy=accuracy.tolist(),
        spike_rate=sum(rates) / len(rates),
        snn_energy_uj=statistics.mean(t["snn_pj"] for t in totals) / 1e6,
        samples_per_s=statistics.mean(float(r["samples_per_s"]) for r in rows),
        gains=None if gains is None else gains.tolist(),
    )


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[dict], threshold: float = DEFAULT_EXIT_THRESHOLD) -> list[dict]:
    """One row per norm: mean ± std final accuracy over seeds, mean accuracy per exit step, spike
    rate, energy, throughput; for BNTT the gamma-chosen exit step and the first step within 1 point."""
    table = []
    for norm in dict.fromkeys(r["norm"] for r in runs):
        group = [r for r in runs if r["norm"] == norm]
        per_step = [statistics.mean(r["accuracy"][t] for r in group) for t in range(len(group[0]["accuracy"]))]
        acc, acc_std = _mean_std([r["accuracy"][-1] for r in group])
        row = dict(
            norm=norm,
            seeds=len(group),
            test_acc=acc,
            test_acc_std=acc_std,
            spike_rate=statistics.mean(r["spike_rate"] for r in group),
            snn_energy_uj=statistics.mean(r["snn_energy_uj"] for r in group),
            train_samples_per_s=statistics.mean(r["samples_per_s"] for r in group),
            first_step_within_1_point=next(t + 1 for t, a in enumerate(per_step) if a >= per_step[-1] - 0.01),
        )
        gains = [r["gains"] for r in group if r["gains"] is not None]
        row["mean_gains"] = [statistics.mean(g[t] for g in gains) for t in range(len(gains[0]))] if gains else None
        row["gamma_exit_step"] = exit_step(torch.tensor(row["mean_gains"]), threshold) if norm == "bntt" else None
        row.update({f"acc_step_{t + 1}": a for t, a in enumerate(per_step)})
        table.append(row)
    return table


def _write(table: list[dict], runs: list[dict], out: Path, o: NormStudyOptions, command: str) -> None:
    steps = len(runs[0]["accuracy"])
    label = {r["norm"]: _variant_label(r["norm"]) for r in table}
    write_csv(out / "comparison.csv", [{k: v for k, v in r.items() if k != "mean_gains"} for r in table])
    write_csv(
        out / "accuracy_per_step.csv",
        [
            {"norm": r["norm"], "seed": r["seed"], "step": t + 1, "accuracy": a}
            for r in runs
            for t, a in enumerate(r["accuracy"])
        ],
    )
    lines = [
        f"# Temporal normalisation on {o.dataset}: {', '.join(label.values())}",
        "",
        f"Same recipe and seeds (0..{o.seeds - 1}) for every variant; test accuracy of the last epoch, "
        f"mean ± std over seeds; 'exit at t': mean accuracy when stopping after t of T={steps} steps "
        "(BNTT and TEBN use their per-step parameters, the shared-statistics norms their running statistics); "
        "spike rate = mean over spiking layers; energy per image at 45 nm (4.6 pJ/MAC, 0.9 pJ/AC).",
        "",
        f"Command: `{command}`",
        "",
        "| norm | test acc. (%) | "
        + " | ".join(f"exit at {t + 1}" for t in range(steps))
        + " | first step within 1 pt | spike rate (%) | energy (uJ) | train img/s |",
        "|---|---|" + "---|" * steps + "---|---|---|---|",
    ]
    for r in table:
        cells = [label[r["norm"]], f"{100 * r['test_acc']:.2f} ± {100 * r['test_acc_std']:.2f}"]
        cells += [f"{100 * r[f'acc_step_{t + 1}']:.1f}" for t in range(steps)]
        cells += [
            str(r["first_step_within_1_point"]),
            f"{100 * r['spike_rate']:.1f}",
            f"{r['snn_energy_uj']:.3f}",
            f"{r['train_samples_per_s']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    bntt = next((r for r in table if r["norm"] == "bntt"), None)
    if bntt is not None:
        fires = bntt["gamma_exit_step"] < steps
        lines += [
            "",
            f"BNTT mean gamma per step: {', '.join(f'{g:.3f}' for g in bntt['mean_gains'])}. "
            f"The paper's exit rule (mean gamma below {DEFAULT_EXIT_THRESHOLD}) "
            + (f"exits after {bntt['gamma_exit_step']} steps." if fires else "never fires: all steps run.")
            + f" Accuracy stays within 1 point of the full run from step {bntt['first_step_within_1_point']}.",
        ]
    write_text(out / "comparison.md", "\n".join(lines) + "\n")
    plot_norm_comparison(
        {label[r["norm"]]: [r[f"acc_step_{t + 1}"] for t in range(steps)] for r in table},
        {label[r["norm"]]: r["mean_gains"] for r in table if r["mean_gains"]},
        out / "accuracy_vs_step.png",
        out / "gammas.png",
        o.dataset,
    )
