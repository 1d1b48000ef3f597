"""Full-precision vs binary ANN -> SNN conversion side by side (Lu & Sengupta 2020), offline on digits.

``compare_conversion(ConversionStudyOptions(...)) -> rows``; what ``python -m bntt_snntorch
compare-conversion`` runs. Trains (or reuses) ``OUTPUT/fp`` and ``OUTPUT/binary`` with the
recipes ``bsnn-digits-fp`` / ``bsnn-digits-binary``, converts each with and without ``one_step``
into ``OUTPUT/<precision>-<mode>/`` (:func:`~bntt_snntorch.experiments.convert_run`), and writes
``OUTPUT/comparison.md`` / ``.csv`` and ``accuracy_vs_time.png``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..files import write_csv, write_text
from ..plots import plot_conversion_comparison
from ..training import TrainConfig, train_or_resume
from .command_line import command_line
from .convert import ConversionOptions, convert_run

PRECISIONS = {"fp": "bsnn-digits-fp", "binary": "bsnn-digits-binary"}
MODES = {"delay": False, "one-step": True}


@dataclass
class ConversionStudyOptions:
    """What :func:`compare_conversion` trains, converts and simulates."""

    output_dir: str = "runs/bsnn-digits"
    num_steps: int = 100  # simulation steps
    percentile: float = 99.9
    norm_images: int = 3500  # balancing images (digits has 1,437 training images: all of them)
    num_epochs: int | None = None  # ANN epochs (default: the recipe's, 40)
    seed: int = 0
    progress: bool = True


def compare_conversion(options: ConversionStudyOptions | None = None) -> list[dict]:
    """Train (or reuse) both ANNs, convert each both ways, write the tables and the plot; returns the rows."""
    o = options or ConversionStudyOptions()
    out = Path(o.output_dir)
    rows, curves = [], {}
    for precision, recipe in PRECISIONS.items():
        run = out / precision
        train_or_resume(
            TrainConfig.from_recipe(
                recipe, output_dir=str(run), seed=o.seed, num_epochs=o.num_epochs, progress=o.progress
            )
        )
        for mode, one_step in MODES.items():
            job = out / f"{precision}-{mode}"
            conversion = ConversionOptions(
                num_steps=o.num_steps,
                percentile=o.percentile,
                norm_images=o.norm_images,
                seed=o.seed,
                one_step=one_step,
                progress=o.progress,
            )
            summary = convert_run(run, job, conversion)
            curves[f"{precision}, {mode}"] = _snn_curve(job / conversion.results_file)
            rows.append(
                dict(
                    precision=precision,
                    mode=mode,
                    ann_acc=summary["ann_accuracy"],
                    snn_acc=summary["snn_accuracy_final"],
                    gap_points=100 * (summary["ann_accuracy"] - summary["snn_accuracy_final"]),
                    within_1_point_at=summary["first_step_within_1_point"],
                    within_2_points_at=summary["first_step_within_2_points"],
                )
            )
    _write_tables(rows, out, o.num_steps, command_line("compare-conversion", o))
    anns = {r["precision"]: r["ann_acc"] for r in rows}
    plot_conversion_comparison(curves, anns, out / "accuracy_vs_time.png")
    return rows


def _snn_curve(path: Path) -> list[float]:
    with open(path) as f:
        return [float(r["snn_accuracy"]) for r in csv.DictReader(f)]


def _write_tables(rows: list[dict], out: Path, num_steps: int, command: str) -> None:
    write_csv(out / "comparison.csv", rows)
    header = [
        f"# ANN -> SNN conversion on digits, T={num_steps}",
        "",
        "ANN and SNN accuracy on the 360 test images; 'within N pt(s) from step': the first step whose "
        "accumulated SNN prediction is at most N points below the ANN.",
        "",
        f"Command: `{command}`",
        "",
    ]
    lines = [
        f"| ANN | propagation | ANN acc. | SNN acc. at T={num_steps} | gap (points) | within 1 pt from step "
        "| within 2 pts from step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['precision']} | {r['mode']} | {100 * r['ann_acc']:.2f}% | {100 * r['snn_acc']:.2f}% | "
            f"{r['gap_points']:.2f} | {r['within_1_point_at']} | {r['within_2_points_at']} |"
        )
    write_text(out / "comparison.md", "\n".join(header + lines) + "\n")
    print("\n".join(lines))
