"""Is ``BNTT_KERNELS=auto`` ever slower than eager on this CPU? VGG9 training steps, side by side.

Three rounds; in each, one fresh process with ``BNTT_KERNELS=eager`` and one with ``auto`` (alternated,
so drift hits both), each timing training steps of BNTT VGG9 (fp32, SGD) after warm-up steps. auto's
first call of a layer measures both paths here (kernels/auto_choice.py) and keeps the result beside
the compile cache: round 1 pays that measurement (and the compile, where it compiles) in its
warm-up, later rounds reuse it, as later runs on a machine do. The rounds share one fresh
TorchInductor cache folder (empty before round 1). Reported: median step time per process, the
auto/eager ratio per round and its minimum, auto's choice per layer shape with the measured
times, and the first-round warm-up of each.

    python benchmarks/auto_vs_eager.py                 # VGG9, T=10, batch 16: about 5 minutes on 2 cores

Results: benchmarks/results/auto-vs-eager-<capability>[-emulated].md and .json (``-emulated``: another ISA's
kernels forced on this CPU by ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA / MKL_ENABLE_INSTRUCTIONS). Run it alone.
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
#: Environment words that limit torch's, oneDNN's and MKL's kernels to another ISA (emulating another CPU kind).
EMULATION_FLAGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
RESULTS = ROOT / "benchmarks" / "results"


def _steps(setting: str, arch: str, num_steps: int, batch: int, warmup: int, iters: int) -> dict:
    """In a child process: warm-up steps (timed as one), then ``iters`` timed training steps."""
    os.environ["BNTT_KERNELS"] = setting
    import torch
    import torch.nn.functional as F

    from bntt_snntorch import create_model
    from bntt_snntorch.kernels import auto_choice

    torch.manual_seed(0)
    model = create_model(arch, num_steps=num_steps, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = (torch.rand(num_steps, batch, 3, 32, 32) < 0.3).float() * torch.sign(torch.randn(num_steps, batch, 3, 32, 32))
    y = torch.randint(0, 10, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    choices = [  # key: machine|torch|paths|dtype|shape|mode[|calls]
        f"{k.split('|')[4]} ({k.split('|')[5]}): {m.path}, {m}" for k, m in auto_choice._CHOICES.items()
    ]
    return {"step_s": statistics.median(times), "warmup_s": warmup_s, "choices": choices}


def _child(setting: str, cache: str, args) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    call = f"_steps({setting!r}, {args.arch!r}, {args.num_steps}, {args.batch_size}, {args.warmup}, {args.iters})"
    code = f"import json, sys; sys.path.insert(0, 'benchmarks'); import auto_vs_eager as b; print(json.dumps(b.{call}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="vgg9")
    p.add_argument("--num-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    import torch

    rounds = []
    with tempfile.TemporaryDirectory() as cache:
        for r in range(args.rounds):
            eager = _child("eager", cache, args)
            auto = _child("auto", cache, args)
            rounds.append({"eager": eager, "auto": auto, "ratio": auto["step_s"] / eager["step_s"]})
            print(f"round {r + 1}: eager {eager['step_s']:.3f} s, auto {auto['step_s']:.3f} s a step "
                  f"({rounds[-1]['ratio']:.3f}x)", flush=True)  # fmt: skip
    machine = dict(
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d"),
        emulated={k: os.environ[k] for k in EMULATION_FLAGS if k in os.environ},
    )
    result = dict(machine=machine, args=vars(args), rounds=rounds, min_ratio=min(r["ratio"] for r in rounds))
    name = f"auto-vs-eager-{machine['cpu_capability'].lower()}" + ("-emulated" if machine["emulated"] else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{name}.md").write_text(report(result))
    print(report(result))
    return result


def report(result: dict) -> str:
    m, a = result["machine"], result["args"]
    lines = [
        f"# BNTT_KERNELS=auto vs eager: {a['arch']} training steps on {m['cpu_capability']}",
        "",
        f"{a['arch']}, T={a['num_steps']}, batch {a['batch_size']}, fp32, SGD; {a['rounds']} rounds of one fresh "
        f"process each way (eager, then auto), median of {a['iters']} steps after {a['warmup']} warm-up steps; "
        f"one TorchInductor cache, empty before round 1. Machine: {m['cpu_capability']}, {m['threads']} threads, "
        f"torch {m['torch']}, {m['date']}."
        + (
            f" Kernels limited ({' '.join(f'{k}={v}' for k, v in m['emulated'].items())}) on a CPU with more:"
            " emulation, this CPU's memory and clock."
            if m.get("emulated")
            else ""
        ),
        "",
        "Command: `python benchmarks/auto_vs_eager.py`",
        "",
        "| round | eager s/step | auto s/step | auto / eager | warm-up s (eager / auto) |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["rounds"], 1):
        lines.append(
            f"| {i} | {r['eager']['step_s']:.3f} | {r['auto']['step_s']:.3f} | {r['ratio']:.3f}x | "
            f"{r['eager']['warmup_s']:.1f} / {r['auto']['warmup_s']:.1f} |"
        )
    lines += [
        "",
        f"Minimum of the rounds: **{result['min_ratio']:.3f}x** eager's step time. Round 1's auto warm-up includes "
        "its measurement of each layer (and the compile where it compiles); later rounds read the kept "
        "measurements.",
        "",
        "auto's choice per layer shape `T x B x C x H x W` (training calls, as kept in round 1 and read since):",
        "",
    ]
    lines += [f"- {line}" for line in result["rounds"][-1]["auto"]["choices"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
