"""Does bf16 autocast pay on this CPU? The VGG9 train step in float32 and under bf16 autocast.

Runs the rows (a) snnTorch per-step loop and (c) ours of benchmarks/throughput.py, each in float32
and bf16 autocast, train step only, and records the CPU's vector capability and whether it has bf16
instructions (avx512_bf16 / amx_bf16). On a CPU without them autocast emulates bf16; ``--amp bf16``
then warns (bntt_snntorch.training.config) and names this file.

    python benchmarks/amp_cpu.py     # a few minutes on 2 cores (bf16 rows are slow where emulated); run it alone
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bntt_snntorch.utils import cpu_bf16_support  # noqa: E402

ROWS = {"a": "(a) snnTorch per-step loop", "c": "(c) ours, multi-step"}
RESULTS = ROOT / "benchmarks" / "results"


def _train_img_s(row: str, args) -> float:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--single", row, "--train-only"]
    cmd += ["--batch-size", str(args.batch_size), "--num-steps", str(args.num_steps)]
    cmd += ["--iters", str(args.iters), "--warmup", "1", "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["batch"] / result["train_s"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=10)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--report-only", action="store_true", help="rewrite the .md from the committed .json")
    args = p.parse_args(argv)
    if args.report_only:
        saved = json.loads((RESULTS / "amp-cpu.json").read_text())
        return write_report(saved["rows"], saved["machine"], saved["settings"])
    native, capability = cpu_bf16_support()
    rows = []
    for row, label in ROWS.items():
        fp32, bf16 = _train_img_s(row, args), _train_img_s(f"{row}-bf16", args)
        rows.append(dict(row=row, label=label, fp32_img_s=fp32, bf16_img_s=bf16, bf16_over_fp32=bf16 / fp32))
        print(rows[-1], flush=True)
    machine = dict(cpu_capability=capability, native_bf16=native, threads=torch.get_num_threads())
    machine["torch"] = torch.__version__
    (RESULTS / "amp-cpu.json").write_text(json.dumps(dict(machine=machine, settings=vars(args), rows=rows), indent=1))
    write_report(rows, machine, vars(args))


def write_report(rows: list[dict], machine: dict, settings: dict) -> None:
    native = machine["native_bf16"]
    lines = [
        "# bf16 autocast on this CPU: the VGG9 train step",
        "",
        f"CPU capability {machine['cpu_capability']}, bf16 instructions (avx512_bf16 / amx_bf16): "
        f"{'yes' if native else 'no' if native is False else 'unknown'}; {machine['threads']} threads, "
        f"torch {machine['torch']}. Batch {settings['batch_size']}, T={settings['num_steps']}, train step (forward "
        f"+ backward + SGD), median of {settings['iters']} after one warm-up; rows of benchmarks/throughput.py.",
        "",
        "Command: `python benchmarks/amp_cpu.py`",
        "",
        "| variant | float32 img/s | bf16 autocast img/s | bf16 / float32 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['label']} | {r['fp32_img_s']:.2f} | {r['bf16_img_s']:.2f} | {r['bf16_over_fp32']:.2f}x |" for r in rows
    ]
    slowest = min(r["bf16_over_fp32"] for r in rows)
    verdict = (
        f"{1 / slowest:.0f}x slower than float32 here: `--amp bf16` on a CPU without bf16 instructions warns and "
        "names this file."
        if slowest < 1
        else "no slower than float32 here."
    )
    lines += ["", f"bf16 autocast runs the train step at {slowest:.2f}x the float32 speed or better: {verdict}"]
    (RESULTS / "amp-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
