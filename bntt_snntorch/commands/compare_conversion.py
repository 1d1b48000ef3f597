"""Full-precision vs binary ANN -> SNN conversion side by side (Lu & Sengupta 2020), offline on digits.

    python -m bntt_snntorch.compare_conversion --output-dir results/bsnn-digits --num-steps 100

Trains (or reuses) ``OUTPUT/fp`` and ``OUTPUT/binary`` with the recipes
``bsnn-digits-fp`` / ``bsnn-digits-binary``, converts each with and without
``--one-step`` into ``OUTPUT/<precision>-<mode>/`` (``train.py convert``), and
writes ``OUTPUT/comparison.md`` / ``.csv`` and ``accuracy_vs_time.png``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ..files import write_csv, write_text
from ..plots import plot_conversion_comparison
from ..training import TrainConfig, train
from .common import add_flag, exit_status
from .convert import convert_checkpoint

PRECISIONS = {"fp": "bsnn-digits-fp", "binary": "bsnn-digits-binary"}
MODES = {"delay": False, "one-step": True}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bntt_snntorch.compare_conversion",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flag(p, "--output-dir", default="runs/bsnn-digits")
    add_flag(p, "--num-steps", type=int, default=100, help="simulation steps")
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--norm", type=int, default=3500, help="balancing images (digits has 1,437 training images)")
    add_flag(p, "--num-epochs", type=int, help="ANN epochs (recipe: 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    """Train (or reuse) both ANNs, convert each both ways, write the tables and the plot; returns the rows."""
    out = Path(args.output_dir)
    rows, curves = [], {}
    for precision, recipe in PRECISIONS.items():
        run = out / precision
        if not (run / "best.pt").exists():
            train(
                TrainConfig.from_recipe(
                    recipe, output_dir=str(run), seed=args.seed, num_epochs=args.num_epochs, progress=args.progress
                )
            )
        for mode, one_step in MODES.items():
            job = out / f"{precision}-{mode}"
            summary = convert_checkpoint(
                run,
                job,
                num_steps=args.num_steps,
                percentile=args.percentile,
                norm=args.norm,
                seed=args.seed,
                one_step=one_step,
                progress=args.progress,
            )
            curves[f"{precision}, {mode}"] = _snn_curve(job / "accuracy_vs_time.csv")
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
    _write_tables(rows, out, args.num_steps, "python -m bntt_snntorch.compare_conversion " + " ".join(argv_of(args)))
    anns = {r["precision"]: r["ann_acc"] for r in rows}
    plot_conversion_comparison(curves, anns, out / "accuracy_vs_time.png")
    return rows


def _snn_curve(path: Path) -> list[float]:
    with open(path) as f:
        return [float(r["snn_accuracy"]) for r in csv.DictReader(f)]


def argv_of(args: argparse.Namespace) -> list[str]:
    """The flags that reproduce ``args``."""
    argv = [
        "--output-dir",
        str(args.output_dir),
        "--num-steps",
        str(args.num_steps),
        "--percentile",
        str(args.percentile),
        "--norm",
        str(args.norm),
        "--seed",
        str(args.seed),
    ]
    return argv + (["--num-epochs", str(args.num_epochs)] if args.num_epochs else [])


def _write_tables(rows: list[dict], out: Path, steps: int, command: str) -> None:
    write_csv(out / "comparison.csv", rows)
    header = [
        f"# ANN -> SNN conversion on digits, T={steps}",
        "",
        "ANN and SNN accuracy on the 360 test images; 'within N pt(s) from step': the first step whose "
        "accumulated SNN prediction is at most N points below the ANN.",
        "",
        f"Command: `{command}`",
        "",
    ]
    lines = [
        f"| ANN | propagation | ANN acc. | SNN acc. at T={steps} | gap (points) | within 1 pt from step "
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


def run(argv: list[str] | None = None) -> int:
    """Console entry point; exit status."""
    args = get_args_parser().parse_args(argv)
    return exit_status(lambda: main(args))


if __name__ == "__main__":
    sys.exit(run())
