"""Training memory against T: BPTT vs the online rules (SLTT, OTTT) on BNTT VGG9.

For every T and rule, in a process of its own: VGG9 (32x32, 10 classes, BNTT, the seed neuron), batch
8, Poisson-coded images (as train.py codes them: all T steps at once for BPTT, step by step inside the
online rules, ``SequenceEncoder.steps``); one training step (forward and backward of a batch, as
training/loop.py runs it: one loss on the mean readout for BPTT, a loss and a backward per step for the
online rules), then timed steps. Reports the peak of the bytes held for backward over a whole step
(bntt_snntorch.profiling.LiveSavedTensors), the growth of the process's peak RSS over the steps and
the training images/s: the best of ``--rounds`` processes per row, the rounds run one after the other
over all rows, so that a slow spell of the machine (another tenant's load) hits one round, not one
row. Writes benchmarks/results/online-memory.md / .json and online-memory.png.

    python benchmarks/online_memory.py     # about 30 minutes on 2 cores (3 rounds); run it alone
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
STEPS = (4, 8, 16, 25, 32, 64)
MODES = ("bptt", "sltt", "ottt")
#: Every row a run may ask for: the three rules, and BPTT with set_memory(model, "low") (the synapse's output
#: recomputed in backward), BPTT held near the online rules' memory.
ALL_MODES = (*MODES, "bptt-low")


def _training_step(num_steps: int, batch: int):
    """``step(mode)``: one training step (forward, backward, SGD) of VGG9 (32x32, 10 classes, BNTT, the seed
    neuron) on a Poisson-coded batch, coded as train.py codes it: all T steps at once for BPTT, step by step
    inside the online rules."""
    import torch.nn.functional as F

    from bntt_snntorch import create_model, set_memory
    from bntt_snntorch.encoding import SequenceEncoder
    from bntt_snntorch.layers import mark_spike_inputs
    from bntt_snntorch.training.online import online_backward
    from bntt_snntorch.utils import tune_cpu_allocator

    tune_cpu_allocator()
    torch.manual_seed(0)
    model = create_model("vgg9", num_steps=num_steps)
    mark_spike_inputs(model.features, input_quantum=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images, y = torch.rand(batch, 3, 32, 32) * 2 - 1, torch.randint(0, 10, (batch,))
    encoder = SequenceEncoder(num_steps, "p", torch.Generator().manual_seed(0))

    def step(mode):
        opt.zero_grad(set_to_none=True)
        set_memory(model, "low" if mode == "bptt-low" else "default")
        if mode.startswith("bptt"):
            F.cross_entropy(model(encoder(images)), y).backward()
        else:
            online_backward(model, encoder.steps(images), y, mode, num_steps=num_steps)
        opt.step()

    return step


def measure(mode: str, num_steps: int, batch: int, iters: int) -> dict:
    """One row, in this process."""
    from bntt_snntorch.profiling import LiveSavedTensors

    train_step = _training_step(num_steps, batch)

    def step():
        train_step(mode)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with LiveSavedTensors() as live:
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    return dict(
        mode=mode,
        num_steps=num_steps,
        batch=batch,
        peak_saved_mib=live.peak / 2**20,
        peak_rss_growth_mib=rss / 2**20,
        train_img_s=batch / statistics.median(times),
    )


def alternated_speed(num_steps: int, batch: int, rounds: int, modes=MODES) -> dict:
    """In one process: VGG9 training steps of the ``modes`` alternated (one of each a round, after one
    warm-up each), so a slow spell of the machine hits all; ``{mode: img/s}`` of each one's fastest."""
    step = _training_step(num_steps, batch)
    best = {}
    for mode in modes:
        step(mode)
    for _ in range(rounds):
        for mode in modes:
            start = time.perf_counter()
            step(mode)
            best[mode] = min(best.get(mode, float("inf")), time.perf_counter() - start)
    return {mode: batch / seconds for mode, seconds in best.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default=",".join(map(str, STEPS)))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="processes per row; the fastest one's img/s is reported")
    p.add_argument("--speed-rounds", type=int, default=3, help="alternated steps per rule in the speed comparison")
    p.add_argument("--single", help=argparse.SUPPRESS)
    p.add_argument("--speed-at", type=int, help=argparse.SUPPRESS)
    p.add_argument("--report-only", action="store_true", help="rewrite the .md and .png from the committed .json")
    p.add_argument("--stem", default="online-memory", help="the results' file name (benchmarks/results/<stem>.*)")
    args = p.parse_args(argv)
    if args.single:
        mode, steps = args.single.split(":")
        print(json.dumps(measure(mode, int(steps), args.batch_size, args.iters)))
        return
    if args.speed_at:
        print(json.dumps(alternated_speed(args.speed_at, args.batch_size, args.speed_rounds, args.modes.split(","))))
        return
    if args.report_only:
        saved = json.loads((RESULTS / f"{args.stem}.json").read_text())
        return write_report(saved["rows"], saved["meta"], args.stem)
    rows = {}
    for _ in range(args.rounds):
        for steps in map(int, args.steps.split(",")):
            for mode in args.modes.split(","):
                cmd = [sys.executable, __file__, "--single", f"{mode}:{steps}", "--batch-size", str(args.batch_size)]
                out = subprocess.run(cmd + ["--iters", str(args.iters)], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                first = rows.setdefault((mode, steps), {**row, "train_img_s_rounds": []})
                first["train_img_s_rounds"].append(row["train_img_s"])
                first["train_img_s"] = max(first["train_img_s_rounds"])
                print(row, flush=True)
    rows = list(rows.values())
    speed = {}
    for steps in (t for t in map(int, args.steps.split(",")) if t >= 16):
        cmd = [sys.executable, __file__, "--speed-at", str(steps), "--batch-size", str(args.batch_size), "--modes",
               args.modes]  # fmt: skip
        out = subprocess.run(
            cmd + ["--speed-rounds", str(args.speed_rounds)], capture_output=True, text=True, check=True
        )
        speed[steps] = json.loads(out.stdout.strip().splitlines()[-1])
        print(steps, speed[steps], flush=True)
    meta = dict(
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d"),
        command="python benchmarks/online_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        iters=args.iters,
        rounds=args.rounds,
        speed_rounds=args.speed_rounds,
        speed=speed,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.stem}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    write_report(rows, meta, args.stem)


def _input_mib(row: dict) -> float:
    """MiB of the coded input held at once, float32: the whole ``(T, B, 3, 32, 32)`` sequence for BPTT, one
    ``(B, 3, 32, 32)`` step for the online rules (coded step by step)."""
    steps = row["num_steps"] if row["mode"].startswith("bptt") else 1
    return steps * row["batch"] * 3 * 32 * 32 * 4 / 2**20


def write_report(rows: list[dict], meta: dict, stem: str = "online-memory") -> None:
    from bntt_snntorch.plots import plot_online_memory

    plot_online_memory([r for r in rows if r["mode"] in MODES], RESULTS / f"{stem}.png")
    by = {(r["mode"], r["num_steps"]) for r in rows}
    steps = sorted({r["num_steps"] for r in rows})
    get = {(r["mode"], r["num_steps"]): r for r in rows}
    lines = [
        "# Training memory vs T: BPTT and the online rules (BNTT VGG9, 32x32, batch 8)",
        "",
        f"- command: `{meta['command']}`; CPU {meta['cpu_capability']}, {meta['threads']} threads, torch "
        f"{meta['torch']}, {meta['date']}",
        "- peak saved: the most bytes held for backward at once over one whole training step (forward and backward "
        "of a batch; bntt_snntorch.profiling.LiveSavedTensors); peak RSS: growth of the process's max RSS over the "
        f"first step and {meta['iters']} timed ones; train img/s: median of the timed steps, the best of "
        f"{meta.get('rounds', 1)} processes run in rounds over all rows (the machine's steal time varied)",
        "",
        "- of which the input: the coded input held at once, float32 — BPTT codes all T steps before its forward "
        "(`(T, B, 3, 32, 32)`), the online rules code each step when they reach it (`(B, 3, 32, 32)`, nothing "
        "held of the other steps); the next column is the peak without it",
        "",
        "| rule | T | peak saved (MiB) | of which the input (MiB) | peak saved without the input (MiB) | "
        "peak RSS growth (MiB) | train img/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['num_steps']} | {r['peak_saved_mib']:.1f} | {_input_mib(r):.2f} | "
            f"{r['peak_saved_mib'] - _input_mib(r):.1f} | {r['peak_rss_growth_mib']:.0f} | {r['train_img_s']:.2f} |"
        )
    lo, hi = steps[0], steps[-1]
    goals = []
    for mode in ("sltt", "ottt"):
        if (mode, lo) in by and (mode, hi) in by:
            growth = get[mode, hi]["peak_saved_mib"] / get[mode, lo]["peak_saved_mib"]
            goals.append((f"{mode}: saved memory from T={lo} to T={hi}, input included, grows <= 1.1x", growth, 1.1))
            without = [get[mode, t]["peak_saved_mib"] - _input_mib(get[mode, t]) for t in (lo, hi)]
            goals.append((f"{mode}: the same without the input batch", without[1] / without[0], 1.1))
    if ("bptt", lo) in by and ("bptt", hi) in by:
        growth = get["bptt", hi]["peak_saved_mib"] / get["bptt", lo]["peak_saved_mib"]
        lines += ["", f"BPTT's saved memory grows {growth:.1f}x from T={lo} to T={hi} (T grows {hi / lo:.0f}x)."]
    for mode in ("sltt", "ottt"):
        if (mode, 25) in by and ("bptt", 25) in by:
            ratio = get[mode, 25]["peak_saved_mib"] / get["bptt", 25]["peak_saved_mib"]
            goals.append((f"{mode}: saved memory at T=25 <= 0.25x BPTT's", ratio, 0.25))
    speed = {int(t): v for t, v in meta.get("speed", {}).items()}
    if speed:
        lines += [
            "",
            f"Training speed side by side: for each T one process alternates the three rules' steps (one of each a "
            f"round, {meta['speed_rounds']} rounds after a warm-up each) and keeps each one's fastest, so a slow spell "
            "of the machine hits all three (the img/s column above is one process a row):",
            "",
            "| T | BPTT img/s | "
            + " | ".join(f"{m} img/s (x BPTT)" for m in ALL_MODES[1:] if m in speed[min(speed)])
            + " |",
            "|---|---|" + "---|" * sum(m in speed[min(speed)] for m in ALL_MODES[1:]),
        ]
        for t, v in sorted(speed.items()):
            others = " | ".join(f"{v[m]:.2f} ({v[m] / v['bptt']:.2f}x)" for m in ALL_MODES[1:] if m in v)
            lines.append(f"| {t} | {v['bptt']:.2f} | {others} |")
    for mode, goal in (("sltt", 1.0), ("ottt", 1.2)):
        for t, v in sorted(speed.items()):
            if mode in v:
                name = f"{mode}: its step time over BPTT's at T={t}, side by side, <= {goal:g}x"
                goals.append((name, v["bptt"] / v[mode], goal))
    lines += _equal_memory(get, speed)
    lines += ["", "Goals:", ""]
    lines += [
        f"- {name}: {'met' if value <= goal else f'MISSED by {100 * (value / goal - 1):.0f}%'} ({value:.2f} vs {goal})"
        for name, value, goal in goals
    ]
    lines += ["", f"![training memory vs T]({stem}.png)"]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _equal_memory(get: dict, speed: dict) -> list[str]:
    """BPTT at the online rules' memory: at each T >= 16 with the rows, BPTT with ``set_memory(model, "low")`` against
    SLTT and OTTT, the step's peak RSS growth and the side-by-side speed."""
    lines = []
    for t in sorted(speed):
        if ("bptt-low", t) not in get or "bptt-low" not in speed[t]:
            continue
        low = get["bptt-low", t]["peak_rss_growth_mib"]
        for mode in ("sltt", "ottt"):
            if (mode, t) in get and mode in speed[t]:
                online = get[mode, t]["peak_rss_growth_mib"]
                lines.append(
                    f"| {t} | {mode} | {online:.0f} | {low:.0f} ({low / online:.2f}x) | "
                    f"{speed[t][mode] / speed[t]['bptt-low']:.2f}x |"
                )
    if not lines:
        return []
    head = [
        "",
        "BPTT toward the online rules' memory: BPTT with set_memory(model, \"low\") (each block's synapse output "
        "recomputed in backward) beside the online rule at the same T:",
        "",
        "| T | online rule | its peak RSS growth (MiB) | BPTT low's (x the rule's) "
        "| the rule's speed over BPTT low's |",
        "|---|---|---|---|---|",
    ]
    return head + lines


if __name__ == "__main__":
    main()
