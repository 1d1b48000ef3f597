"""The default run's seed table: ``python train.py`` with seeds 0-2, against the previous default, on this CPU.

Each run is ``python train.py --seed S --no-progress --output-dir <tmp> [flags]`` in a process of its own,
one after the other, the variants alternated seed by seed (so a slow spell of the machine hits both).
Reported per run: the final epoch's test accuracy (what train.py prints and the README quotes), the best
epoch's, the training and evaluation seconds train.py sums, and the process's wall time (imports and data
included); per variant: mean, min and standard deviation of the final accuracy, mean seconds.

    python benchmarks/default_recipe.py                      # 2 variants x 3 seeds: about 10 minutes on 2 cores
    python benchmarks/default_recipe.py --variant "default=" --variant "t20=--num-steps 20 --num-epochs 15"

A variant is ``NAME=FLAGS``: train.py's flags over the default recipe, and environment settings written
before them as in a shell (``--variant "eager steps=BNTT_KERNELS=eager"``). Every run starts from an
empty TorchInductor cache of its own (``TORCHINDUCTOR_CACHE_DIR``): a first run on this machine, the
kernel choices measured and the C loops built inside it. On another ISA's kernels
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` on an AVX-512 CPU)
the files are named ``-emulated``. Results: benchmarks/results/default-recipe-<capability>[-emulated][-TAG].md
and .json. Run it alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Today's default against the previous one (the BNTT seed's Poisson input, no label smoothing).
DEFAULT_VARIANTS = ("default=", "previous default=--recipe digits-poisson")
EMULATION_FLAGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def split_settings(words: list[str]) -> tuple[dict, list[str]]:
    """``(environment, flags)`` of a variant's words: leading ``NAME=value`` words (upper-case names) set the
    environment, as in a shell; the rest are train.py's flags."""
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words[0].split("=", 1)
        env[name] = value
        words = words[1:]
    return env, words


def run_once(flags: list[str], seed: int, out: Path) -> dict:
    """One ``train.py`` run in a process of its own, from an empty TorchInductor cache -> its final / best
    accuracy and seconds."""
    settings, flags = split_settings(flags)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(out / "inductor-cache"), **settings}
    command = [sys.executable, "train.py", "--seed", str(seed), "--no-progress", "--output-dir", str(out), *flags]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{' '.join(command[1:])} failed (exit {done.returncode}): {last}")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    accs = [float(r["test_acc"]) for r in rows]
    return dict(
        seed=seed,
        final_acc=100 * accs[-1],
        best_acc=100 * max(accs),
        epochs=len(rows),
        train_eval_s=sum(float(r["epoch_seconds"]) for r in rows),
        wall_s=wall,
    )


def summarise(runs: list[dict]) -> dict:
    final = [r["final_acc"] for r in runs]
    return dict(
        mean_acc=statistics.mean(final),
        min_acc=min(final),
        std_acc=statistics.stdev(final) if len(final) > 1 else 0.0,
        mean_train_eval_s=statistics.mean(r["train_eval_s"] for r in runs),
        mean_wall_s=statistics.mean(r["wall_s"] for r in runs),
    )


def machine() -> dict:
    import torch

    emulated = {k: os.environ[k] for k in EMULATION_FLAGS if k in os.environ}
    return dict(
        cpu=platform.processor() or platform.machine(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        emulated=emulated,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        date=time.strftime("%Y-%m-%d"),
    )


def write_report(report: dict, out_dir: Path) -> Path:
    m = report["machine"]
    slug = f"default-recipe-{m['cpu_capability'].lower()}" + ("-emulated" if m["emulated"] else "")
    slug += f"-{report['tag']}" if report.get("tag") else ""
    where = f"CPU capability {m['cpu_capability']}, {m['threads']} threads, torch {m['torch']}, {m['date']}"
    if m["emulated"]:
        flags = " ".join(f"{k}={v}" for k, v in m["emulated"].items())
        where += f"; kernels limited ({flags}) on an AVX-512 CPU: emulation, this CPU's memory and clock"
    lines = [
        f"# The default run, seeds {', '.join(str(s) for s in report['seeds'])}: `python train.py` and variants",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {where}",
        "- final: the last epoch's test accuracy (what train.py reports); best: the best epoch's; "
        "train+eval s: the epochs' seconds train.py sums; wall s: the whole process",
        "",
        "| variant | flags | seed | final % | best % | train+eval s | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in report["variants"]:
        for r in v["runs"]:
            lines.append(
                f"| {v['name']} | `{v['flags'] or '(none)'}` | {r['seed']} | {r['final_acc']:.2f} | "
                f"{r['best_acc']:.2f} | {r['train_eval_s']:.1f} | {r['wall_s']:.1f} |"
            )
    lines += ["", "| variant | mean final % | min final % | std | mean train+eval s | mean wall s |"]
    lines.append("|---|---|---|---|---|---|")
    for v in report["variants"]:
        s = v["summary"]
        lines.append(
            f"| {v['name']} | {s['mean_acc']:.2f} | {s['min_acc']:.2f} | {s['std_acc']:.2f} | "
            f"{s['mean_train_eval_s']:.1f} | {s['mean_wall_s']:.1f} |"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{slug}.json").write_text(json.dumps(report, indent=1) + "\n")
    path = out_dir / f"{slug}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", help="NAME=FLAGS (repeat); default: today's default vs the previous")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", help="appended to the result files' names (a study of its own beside the default one)")
    args = p.parse_args(argv)
    variants = [v.split("=", 1) for v in (args.variant or DEFAULT_VARIANTS)]
    seeds = [int(s) for s in args.seeds.split(",")]
    found = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for i, (name, flags) in enumerate(variants):
                run = run_once(shlex.split(flags), seed, Path(tmp) / f"variant{i}-seed{seed}")
                found[name].append(run)
                print(f"{name} seed {seed}: {run['final_acc']:.2f} % in {run['wall_s']:.0f} s", flush=True)
    report = dict(
        command="python benchmarks/default_recipe.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        machine=machine(),
        tag=args.tag,
        seeds=seeds,
        variants=[dict(name=n, flags=f, runs=found[n], summary=summarise(found[n])) for n, f in variants],
    )
    print(write_report(report, args.out))


if __name__ == "__main__":
    main()
