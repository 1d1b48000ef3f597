"""When do the compiled CPU steps of the fused BNTT block pay back their compile time?

For layers of several sizes (neurons a step, B * C * H * W) it times one training call (forward +
backward, T steps) of a ``Conv -> BNTT -> seed neuron`` block on the eager path ("bntt-eager") and on
the TorchInductor-compiled steps ("bntt-compiled"), the latter warm and, in a fresh process with an
empty compile cache, cold (the first call, compile included). The break-even is the number of calls
after which the compiled path has saved its compile time. Results: benchmarks/results/compile-breakeven.md
and .json. ``BNTT_KERNELS=auto`` takes no threshold from here: it measures each layer on the machine it
runs on (``bntt_snntorch.kernels.compile_choice``; ``benchmarks/auto_vs_eager.py``); the best saving
measured here bounds which layers it measures (``compile_choice.BEST_SAVING``).

    python benchmarks/compile_breakeven.py            # about 10 minutes on 2 cores; run it alone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# (batch, channels, side): the digits net's largest layer (B=64), then VGG9-like layers
SIZES = [(64, 32, 8), (16, 64, 16), (16, 64, 32), (32, 64, 32)]


def _measure(batch: int, channels: int, side: int, steps: int, path: str, repeats: int) -> dict:
    """Run in a child process: time the first call and the median of ``repeats`` more."""
    import torch
    from torch import nn

    from bntt_snntorch import BatchNormTT2d, bntt_leaky
    from bntt_snntorch.layers import SpikingBlock

    os.environ["BNTT_KERNELS"] = "compiled" if path == "bntt-compiled" else "eager"
    torch.manual_seed(0)
    block = SpikingBlock(nn.Conv2d(channels, channels, 3, padding=1, bias=False), BatchNormTT2d(channels, steps),
                         bntt_leaky(0.95))  # fmt: skip
    x = (torch.rand(steps, batch, channels, side, side) < 0.2).float()

    def call():
        block.zero_grad()
        y = block(x)
        y.sum().backward()

    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"first_s": first, "call_s": statistics.median(times)}


def _child(batch, channels, side, steps, path, repeats, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import compile_breakeven as c; "
        f"print(json.dumps(c._measure({batch}, {channels}, {side}, {steps}, {path!r}, {repeats})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the committed .json")
    args = p.parse_args(argv)
    if args.report_only:
        saved = json.loads((RESULTS / "compile-breakeven.json").read_text())
        return write_report(saved["rows"], saved["machine"])
    import torch

    rows = []
    for batch, channels, side in SIZES:
        with tempfile.TemporaryDirectory() as cache:
            eager = _child(batch, channels, side, args.num_steps, "bntt-eager", args.repeats, cache)
            cold = _child(batch, channels, side, args.num_steps, "bntt-compiled", args.repeats, cache)
            warm = _child(batch, channels, side, args.num_steps, "bntt-compiled", args.repeats, cache)  # cache filled
        saved = eager["call_s"] - cold["call_s"]
        compile_s = cold["first_s"] - cold["call_s"]
        warm_compile_s = warm["first_s"] - warm["call_s"]
        rows.append(
            dict(
                neurons=batch * channels * side * side,
                shape=f"B={batch} C={channels} {side}x{side}",
                eager_call_s=eager["call_s"],
                compiled_call_s=cold["call_s"],
                cold_compile_s=compile_s,
                warm_compile_s=warm_compile_s,
                breakeven_calls_cold=compile_s / saved if saved > 0 else None,
                breakeven_calls_warm=warm_compile_s / saved if saved > 0 else None,
            )
        )
        print(rows[-1], flush=True)
    machine = dict(
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        num_steps=args.num_steps,
        repeats=args.repeats,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compile-breakeven.json").write_text(json.dumps(dict(machine=machine, rows=rows), indent=1))
    write_report(rows, machine)


def write_report(rows: list[dict], machine: dict) -> None:
    """``compile-breakeven.md`` from the measured rows."""
    lines = [
        "# Compiled vs eager CPU steps of the fused BNTT block: the break-even",
        "",
        f"One training call (forward + backward) of Conv3x3 -> BNTT -> seed neuron, T={machine['num_steps']}, spike "
        f"input; median of {machine['repeats']} calls after the first. Cold: a fresh process with an empty "
        "TorchInductor cache (what a new machine pays once); warm: the same with the cache filled. Break-even: "
        "calls after which the compiled path has saved its compile time. Machine: "
        f"{machine['cpu_capability']}, {machine['threads']} threads, torch {machine['torch']}.",
        "",
        "Command: `python benchmarks/compile_breakeven.py`",
        "",
        "| layer | neurons a step | eager s/call | compiled s/call | compile s (cold / warm) "
        "| break-even calls (cold / warm) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cold, warm = r["breakeven_calls_cold"], r["breakeven_calls_warm"]
        be = "never" if cold is None else f"{cold:.0f} / {warm:.0f}"
        lines.append(
            f"| {r['shape']} | {r['neurons']:,} | {r['eager_call_s']:.3f} | {r['compiled_call_s']:.3f} | "
            f"{r['cold_compile_s']:.1f} / {r['warm_compile_s']:.1f} | {be} |"
        )
    best = max(1 - r["compiled_call_s"] / r["eager_call_s"] for r in rows)
    lines += [
        "",
        f"The best saving a call here: {100 * best:.0f} %. `BNTT_KERNELS=auto` takes no size threshold from this "
        "table (another CPU gains differently): it times both paths at each layer's shape on the machine it runs "
        "on and compiles where the compiled call was at least 5 % faster (`bntt_snntorch.kernels.compile_choice`, "
        "`benchmarks/auto_vs_eager.py`); a layer whose eager call is too short for the best saving seen to pay "
        "back a compile within 100 calls is not compiled to be measured. `BNTT_KERNELS=compiled` compiles every size.",
    ]
    (RESULTS / "compile-breakeven.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
