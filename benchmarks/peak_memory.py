"""A training step's peak memory, as the user's process sees it: the snnTorch per-step loop against ours.

    python benchmarks/peak_memory.py                  # VGG9-BNTT, fp32, T=10, B=16, 32x32, two runs a variant

Each variant runs in its own process (``--child``), started with glibc told to return freed memory
(``MALLOC_TRIM_THRESHOLD_=0``, ``MALLOC_MMAP_THRESHOLD_=65536``: no freed block is kept, so the
resident size is what the process holds). There: the model, its input and optimizer, two warm-up
steps; then freed memory is returned (``malloc_trim``), the kernel's resident high-water mark is reset
(``/proc/self/clear_refs``, 5) and the resident size read; one training step (forward, loss,
backward, SGD); the high-water mark read again. The step's peak is the difference: every transient of
the step counts (activations, saved tensors, gradient buffers, kernel workspaces), the weights and
what the process held before do not. Beside it, the most bytes autograd held for backward at once
over the same step (``bntt_snntorch.profiling.LiveSavedTensors``). Variants (``benchmarks/throughput.py``'s
rows): ``a`` the snnTorch loop (``snn.Leaky`` + ``snn.BatchNormTT2d``), ``c`` ours
(``create_model("vgg9")``, multi-step), ``c-low`` ours after ``set_memory(model, "low")``. Each row's step time
beside it (the median of three more steps in its process). Writes ``benchmarks/results/peak-memory-<cpu>.md`` /
``.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import build  # noqa: E402  (the rows' models, one definition)

from bntt_snntorch import set_memory  # noqa: E402
from bntt_snntorch.profiling import LiveSavedTensors  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "a": ("snnTorch per-step loop (snn.Leaky + snn.BatchNormTT2d)", "snntorch"),
    "c": ("ours, multi-step", "ours"),
    "c-low": ('ours, multi-step, set_memory(model, "low")', "ours"),
}
GLIBC_RETURNS_FREED = {"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TOP_PAD_": "0"}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(variant: str, args) -> dict:
    """This process's step peak for ``variant`` (see the module's docstring)."""
    torch.manual_seed(0)
    args.arch = "vgg9"
    model = build(VARIANTS[variant][1], args)
    if variant == "c-low":
        set_memory(model, "low")
    x = (torch.rand(args.num_steps, args.batch_size, 3, 32, 32) < 0.2).float()
    labels = torch.randint(0, 10, (args.batch_size,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, foreach=True)

    def step():
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=False)  # gradient buffers of the previous step are kept, as training keeps them
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    before = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM") - before
    with LiveSavedTensors() as live:
        step()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"variant": variant, "peak_mib": peak / 1024, "saved_mib": live.peak / 2**20, "before_mib": before / 1024,
            "step_ms": 1e3 * statistics.median(times)}  # fmt: skip


def alternated_speed(args) -> dict:
    """In one process, as training runs (the default allocator): ours in the default mode and after
    ``set_memory(model, "low")``, steps alternated for ``--speed-rounds`` rounds after two warm-up steps each;
    each one's fastest step (ms) and the median over the rounds of the low step over the default one."""
    import copy

    torch.manual_seed(0)
    args.arch = "vgg9"
    default = build("ours", args)
    low = set_memory(copy.deepcopy(default), "low")
    x = (torch.rand(args.num_steps, args.batch_size, 3, 32, 32) < 0.2).float()
    labels = torch.randint(0, 10, (args.batch_size,))
    optimizers = {id(m): torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, foreach=True) for m in (default, low)}

    def step(model) -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), labels)
        optimizers[id(model)].zero_grad(set_to_none=False)
        loss.backward()
        optimizers[id(model)].step()
        return time.perf_counter() - start

    for model in (default, low, default, low):
        step(model)
    rounds = [(step(default), step(low)) for _ in range(args.speed_rounds)]
    return {
        "default_ms": 1e3 * min(d for d, _ in rounds),
        "low_ms": 1e3 * min(lo for _, lo in rounds),
        "median_ratio": statistics.median(lo / d for d, lo in rounds),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-steps", dest="num_steps", type=int, default=10)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    p.add_argument("--runs", type=int, default=2, help="processes a variant (median reported)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--speed-rounds", type=int, default=7, help="alternated default / low steps in one process")
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    p.add_argument("--speed", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return {}
    if args.speed:
        print(json.dumps(alternated_speed(args)))
        return {}

    env = {**os.environ, **GLIBC_RETURNS_FREED, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
    env = {k: v for k, v in env.items() if v != ""}
    rows = {}
    for _ in range(args.runs):
        for variant in args.variants:  # alternated processes
            command = [sys.executable, __file__, "--child", variant, "--num-steps", str(args.num_steps)]
            out = subprocess.run(
                [*command, "--batch-size", str(args.batch_size)], env=env, capture_output=True, text=True, check=True
            )
            rows.setdefault(variant, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    command = [sys.executable, __file__, "--speed", "--num-steps", str(args.num_steps), "--batch-size",
               str(args.batch_size), "--speed-rounds", str(args.speed_rounds)]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # the default allocator
    speed = json.loads(out.stdout.strip().splitlines()[-1])
    summary = {
        v: {
            "label": VARIANTS[v][0],
            "peak_mib": statistics.median(r["peak_mib"] for r in runs),
            "peak_mib_runs": [round(r["peak_mib"], 1) for r in runs],
            "saved_mib": statistics.median(r["saved_mib"] for r in runs),
            "step_ms": statistics.median(r["step_ms"] for r in runs),
        }
        for v, runs in rows.items()
    }
    capability = torch.backends.cpu.get_cpu_capability()
    meta = {
        "command": "python benchmarks/peak_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": capability,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "model": "VGG9-BNTT",
        "T": args.num_steps,
        "batch": args.batch_size,
        "dtype": "fp32",
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"peak-memory-{capability.lower()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({**meta, "variants": summary, "speed": speed}, indent=2) + "\n")
    loop = summary.get("a")
    lines = [
        f"# A training step's peak memory, VGG9-BNTT, T={args.num_steps}, B={args.batch_size}, 32x32, fp32",
        "",
        f"`{meta['command']}` — {capability} CPU, {os.cpu_count()} cores, torch {torch.__version__}; each variant in "
        f"its own process, {args.runs} processes a variant (median; every run listed), glibc returning freed memory.",
        "",
        "| variant | step peak (MiB) | runs | of the loop's | saved for backward, peak (MiB) | of the loop's "
        "| step (ms) | of ours, default |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours = summary.get("c")
    for row in summary.values():
        of_peak = f"{row['peak_mib'] / loop['peak_mib']:.2f}x" if loop else ""
        of_saved = f"{row['saved_mib'] / loop['saved_mib']:.2f}x" if loop else ""
        of_ours = f"{row['step_ms'] / ours['step_ms']:.2f}x" if ours else ""
        runs = ", ".join(f"{r:.0f}" for r in row["peak_mib_runs"])
        lines.append(
            f"| {row['label']} | {row['peak_mib']:.0f} | {runs} | {of_peak} | {row['saved_mib']:.0f} | {of_saved} "
            f"| {row['step_ms']:.0f} | {of_ours} |"
        )
    lines += [
        "",
        "Step peak: the growth of the resident high-water mark over one training step (forward, loss, backward, SGD) "
        "after two warm-up steps, from the resident size just before it (weights, gradients of the previous step, "
        "the input and the optimizer state excluded). Saved for backward: the most bytes autograd held at once over a "
        "step (bntt_snntorch.profiling.LiveSavedTensors). Step: the median of three more steps in the same process "
        "(this benchmark's allocator settings return every freed block, which slows every row alike; "
        "benchmarks/throughput.py times steps as training runs them).",
        "",
        f"The low mode's step, as training runs it (one process, the default allocator, the two modes' steps "
        f"alternated for {args.speed_rounds} rounds after two warm-up steps each): fastest {speed['low_ms']:.0f} ms "
        f"against {speed['default_ms']:.0f} ms, **{speed['low_ms'] / speed['default_ms']:.2f}x** the default "
        f"mode's (median of the rounds' ratios {speed['median_ratio']:.2f}x).",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
