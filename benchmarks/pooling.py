"""2x2 average pooling on the CPU: torch's kernel against the C loops (``bntt_snntorch.kernels.c_pool``).

At the shapes the models pool (the digits net at T=10, batch 32; VGG9 at T=10, batch 16: the ``(T*B, C, H, W)``
spikes between blocks) it times the forward (``F.avg_pool2d`` / ``c_pool.forward``) and the input gradient
(``aten.avg_pool2d_backward`` / ``c_pool.backward``), the four calls interleaved round by round in one process,
and checks that both give the same bits. Results: ``benchmarks/results/pooling-<tag>.md`` and ``.json``.

    python benchmarks/pooling.py --tag avx512            # under a minute; run it alone
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/pooling.py --tag avx2-emulated
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bntt_snntorch.kernels import c_pool
from bntt_snntorch.utils import tune_cpu_allocator

RESULTS = Path(__file__).resolve().parent / "results"
#: (model, (T*B, C, H, W)) of each pool's input
SHAPES = [
    ("digits", (320, 32, 8, 8)),
    ("digits", (320, 64, 4, 4)),
    ("vgg9", (160, 64, 32, 32)),
    ("vgg9", (160, 128, 16, 16)),
    ("vgg9", (160, 256, 8, 8)),
]
EMULATION_FLAGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _time(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(shape: tuple[int, ...], rounds: int) -> dict:
    """Median and fastest seconds of each of the four calls over ``rounds`` interleaved rounds."""
    x = (torch.rand(shape) < 0.2).float()  # spikes, as between blocks
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    pool_args = [2, 2], [2, 2], [0, 0], False, True, None  # kernel, stride, padding, ceil, count_include_pad, divisor
    calls = {
        "torch_forward": lambda: F.avg_pool2d(x, 2),
        "c_forward": lambda: c_pool.forward(x),
        "torch_backward": lambda: torch.ops.aten.avg_pool2d_backward(grad, x, *pool_args),
        "c_backward": lambda: c_pool.backward(grad),
    }
    same = torch.equal(calls["torch_forward"](), calls["c_forward"]()) and torch.equal(
        calls["torch_backward"](), calls["c_backward"]()
    )
    times = {name: [] for name in calls}
    for _ in range(3):
        for call in calls.values():
            call()
    for _ in range(rounds):
        for name, call in calls.items():
            times[name].append(_time(call))
    row = {"same_bits": same}
    for name, seconds in times.items():
        row[name] = dict(median_us=1e6 * statistics.median(seconds), fastest_us=1e6 * min(seconds))
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", required=True, help="the results' name: pooling-<tag>.md / .json")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    tune_cpu_allocator()
    rows = [dict(model=model, shape=list(shape), **measure(shape, args.rounds)) for model, shape in SHAPES]
    machine = dict(
        cpu=platform.processor() or platform.machine(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        emulated={k: os.environ[k] for k in EMULATION_FLAGS if k in os.environ},
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        date=time.strftime("%Y-%m-%d"),
        rounds=args.rounds,
    )
    result = dict(machine=machine, rows=rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pooling-{args.tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"pooling-{args.tag}.md").write_text(report(result, args.tag))
    print(report(result, args.tag))
    return result


def report(result: dict, tag: str) -> str:
    m = result["machine"]
    emulated = ", emulated by " + " ".join(f"{k}={v}" for k, v in m["emulated"].items()) if m["emulated"] else ""
    lines = [
        "# 2x2 average pooling on the CPU: torch's kernel and the C loops",
        "",
        f"Machine: {m['cpu_capability']} kernels{emulated}, {m['threads']} threads, torch {m['torch']}, {m['date']}. "
        f"Median (fastest) of {m['rounds']} interleaved rounds, microseconds a call; spike input.",
        "",
        f"Command: `python benchmarks/pooling.py --tag {tag}`",
        "",
        "| model | input (T*B, C, H, W) | same bits | forward torch | forward C | speed-up | backward torch "
        "| backward C | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cells = [r["model"], "x".join(map(str, r["shape"])), "yes" if r["same_bits"] else "**no**"]
        for direction in ("forward", "backward"):
            t, c = r[f"torch_{direction}"], r[f"c_{direction}"]
            cells += [
                f"{t['median_us']:.0f} ({t['fastest_us']:.0f})",
                f"{c['median_us']:.0f} ({c['fastest_us']:.0f})",
                f"{t['median_us'] / c['median_us']:.1f}x",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
