"""Full-precision vs binary ANN -> SNN conversion side by side (Lu & Sengupta 2020), offline on digits.

    python -m bntt_snntorch.compare_conversion --output-dir results/bsnn-digits --time 100

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

from .cli import get_args_parser as train_parser
from .cli import main as train_main
from .convert import get_args_parser as convert_parser
from .convert import main as convert_main
from .plots import plot_conversion_comparison

PRECISIONS = {"fp": "bsnn-digits-fp", "binary": "bsnn-digits-binary"}
MODES = {"delay": [], "one-step": ["--one-step"]}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="runs/bsnn-digits")
    p.add_argument("--time", type=int, default=100, help="simulation steps")
    p.add_argument("--percentile", type=float, default=99.9)
    p.add_argument("--norm", type=int, default=3500, help="balancing images (digits has 1,437 training images)")
    p.add_argument("--num_epochs", "--num-epochs", dest="num_epochs", type=int, help="ANN epochs (recipe: 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    out = Path(args.output_dir)
    quiet = [] if args.progress else ["--no-progress"]
    rows, curves = [], {}
    for precision, recipe in PRECISIONS.items():
        run = out / precision
        if not (run / "best.pt").exists():
            argv = ["--recipe", recipe, "--output-dir", str(run), "--seed", str(args.seed)]
            argv += ["--num_epochs", str(args.num_epochs)] if args.num_epochs else []
            train_main(train_parser().parse_args(argv + quiet))
        for mode, flags in MODES.items():
            job = out / f"{precision}-{mode}"
            summary = convert_main(convert_parser().parse_args(
                ["--job-dir", str(job), "--model", str(run), "--time", str(args.time), "--percentile",
                 str(args.percentile), "--norm", str(args.norm), "--seed", str(args.seed), *flags, *quiet]))
            with open(job / "accuracy_vs_time.csv") as f:
                curves[f"{precision}, {mode}"] = [float(r["snn_accuracy"]) for r in csv.DictReader(f)]
            rows.append(dict(precision=precision, mode=mode, ann_acc=summary["ann_accuracy"],
                             snn_acc=summary["snn_accuracy_final"], gap_points=100 * (summary["ann_accuracy"] - summary["snn_accuracy_final"]),
                             within_1_point_at=summary["first_step_within_1_point"],
                             within_2_points_at=summary["first_step_within_2_points"]))
    _write_tables(rows, out, args.time, "python -m bntt_snntorch.compare_conversion " + " ".join(argv_of(args)))
    anns = {r["precision"]: r["ann_acc"] for r in rows}
    plot_conversion_comparison(curves, anns, out / "accuracy_vs_time.png")
    return rows


def argv_of(args: argparse.Namespace) -> list[str]:
    """The flags that reproduce ``args``."""
    argv = ["--output-dir", str(args.output_dir), "--time", str(args.time), "--percentile", str(args.percentile),
            "--norm", str(args.norm), "--seed", str(args.seed)]
    return argv + (["--num_epochs", str(args.num_epochs)] if args.num_epochs else [])


def _write_tables(rows: list[dict], out: Path, steps: int, command: str) -> None:
    with open(out / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = [f"# ANN -> SNN conversion on digits, T={steps}", "",
              "ANN and SNN accuracy on the 360 test images; 'within N pt(s) from step': the first step whose "
              "accumulated SNN prediction is at most N points below the ANN.", "", f"Command: `{command}`", ""]
    lines = [f"| ANN | propagation | ANN acc. | SNN acc. at T={steps} | gap (points) | within 1 pt from step "
             "| within 2 pts from step |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['mode']} | {100 * r['ann_acc']:.2f}% | {100 * r['snn_acc']:.2f}% | "
                     f"{r['gap_points']:.2f} | {r['within_1_point_at']} | {r['within_2_points_at']} |")
    (out / "comparison.md").write_text("\n".join(header + lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(get_args_parser().parse_args(sys.argv[1:]))
