"""One command for a lent GPU: the CUDA tests, then the throughput and memory rows, written to
benchmarks/results/gpu-<device>.md and .json next to the projection (gpu-projection.md).

    python benchmarks/gpu_check.py            # about 3-5 minutes on one H100 / H200; run it alone

* Without a CUDA GPU it prints one line and exits 0 (that is what CI runs).
* The tests: the Triton entry of tests/test_backends.py (the fused block against the per-step reference: training,
  the online rule, bf16; eval too with ``--tests full``), tests/test_triton_bntt.py (its currents, its
  torch.library op, a whole model) and tests/test_kernels.py (every leaky scan, Triton included) on the device;
  the Triton kernels are JIT-compiled there.
* The rows (benchmarks/throughput.py, one process each): (a) the snnTorch per-step loop, (c) ours (on
  CUDA: the fused Triton BNTT block), (e) the ReLU ceiling, (f) SpikingJelly where it is installed; each
  in float32 and bf16 autocast, VGG9 T=25 at two batch sizes; train and inference images/s,
  ``torch.cuda.max_memory_allocated`` and the bytes kept for backward.

The GPU machine may hold only Python, torch and Triton (no package index): snnTorch, which the
reference rows and the package need, is installed from wheels in ``.whl/`` at the start. Fetch them
once on a machine with an index (``python benchmarks/gpu_check.py --fetch-wheels``) and carry ``.whl``
along. tonic and the data sets are not needed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".whl"
CARRIED = {"snntorch": "snntorch==1.0.0"}  # what the check imports beyond Python, torch and Triton
ROWS = ["a", "a-bf16", "c", "c-bf16", "e", "e-bf16", "f", "f-bf16"]


def fetch_wheels() -> None:
    """Download the carried packages as wheels into .whl/ (here, where pip reaches an index)."""
    WHEELS.mkdir(exist_ok=True)
    for spec in CARRIED.values():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(WHEELS), spec],
            check=True,
        )
    print(f"wheels in {WHEELS}: {', '.join(p.name for p in WHEELS.glob('*.whl'))}")


def ensure_importable() -> list[str]:
    """Install whatever of CARRIED is missing from .whl/ into a temporary folder; returns what was installed."""
    missing = []
    for name in CARRIED:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if not missing:
        return []
    wheels = [str(p) for name in missing for p in WHEELS.glob(f"{name}-*.whl")]
    if len(wheels) < len(missing):
        raise SystemExit(
            f"gpu_check: {', '.join(missing)} not installed and no wheel in {WHEELS}; run "
            "`python benchmarks/gpu_check.py --fetch-wheels` where pip reaches an index and carry .whl"
        )
    target = Path(tempfile.mkdtemp(prefix="gpu-check-site-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target), *wheels],
        check=True,
    )
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), str(ROOT), os.environ.get("PYTHONPATH")]))
    return missing


def run_tests(selection: str, env: dict, timeout: int) -> dict:
    """The device tests; ``selection``: quick (the representative subset), full or none."""
    if selection == "none":
        return dict(selection="none")
    keyword = {
        "quick": "(bntt-triton and not eval) or test_triton_bntt or triton-cuda or torch-cuda",
        "full": "bntt-triton or test_triton_bntt or cuda",
    }[selection]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_backends.py",
           "tests/test_triton_bntt.py", "tests/test_kernels.py", "-k", keyword]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    failures = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return dict(selection=selection, summary=summary, seconds=time.perf_counter() - start, failures=failures,
                passed=counts.get("passed", 0), failed=counts.get("failed", 0) + counts.get("error", 0))  # fmt: skip


def run_row(row: str, batch: int, args, env: dict) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--single", row, "--device", args.device]
    cmd += ["--batch-size", str(batch), "--num-steps", str(args.num_steps), "--iters", str(args.iters)]
    cmd += ["--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(row=row, batch=batch, error=(proc.stderr.strip().splitlines() or ["failed"])[-1][:300])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plans(args) -> list[str]:
    """What ours runs on the device, layer by layer (bntt_snntorch.kernels.explain)."""
    import torch

    from bntt_snntorch import create_model
    from bntt_snntorch.kernels import explain

    model = create_model("vgg9", num_steps=args.num_steps).to(args.device)
    x = (torch.rand(args.num_steps, 2, 3, 32, 32, device=args.device) < 0.2).float()
    return [str(line) for line in explain(model, x)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fetch-wheels", action="store_true", help="download the carried packages into .whl/ and stop")
    p.add_argument("--tests", choices=["quick", "full", "none"], default="quick")
    p.add_argument("--batch-sizes", default="64,256", help="the two batch sizes of the rows")
    p.add_argument("--num-steps", type=int, default=25)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    p.add_argument("--self-test", action="store_true", help=argparse.SUPPRESS)  # the GPU branch on CPU, tiny
    args = p.parse_args(argv)
    if args.fetch_wheels:
        fetch_wheels()
        return 0
    import torch

    if not args.self_test and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to check; exit 0")
        return 0
    start = time.perf_counter()
    installed = ensure_importable()
    sys.path.insert(0, str(ROOT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("BNTT_KERNELS", None)  # the defaults a user gets: Triton on CUDA
    if args.self_test:  # the GPU branch's plumbing on a CPU: the interpreter, the eager CPU kernels
        env.update(TRITON_INTERPRET="1", BNTT_KERNELS="eager")
        os.environ.update(TRITON_INTERPRET="1", BNTT_KERNELS="eager")
        args.device = "cpu"
    tests = run_tests(args.tests, env, timeout=240 if args.tests == "quick" else 1800)
    print(f"tests: {tests.get('summary', 'not run')}", flush=True)

    try:
        import spikingjelly  # noqa: F401

        has_sj = True
    except ImportError:
        has_sj = False
    results = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for row in args.rows.split(","):
            if row.startswith("f") and not has_sj:
                continue
            results.append(run_row(row, batch, args, env))
            r = results[-1]
            print(f"{row} B={batch}: " + (r["error"] if "error" in r else f"train {r['train_img_s']:.1f} img/s, "
                  f"inference {r['infer_img_s']:.1f} img/s, peak {r['peak_mem_mib']:.0f} MiB"), flush=True)  # fmt: skip

    import triton

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor()}), self-test"
    meta = dict(
        device=device,
        capability=".".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else None,
        torch=torch.__version__,
        triton=triton.__version__,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d"),
        command="python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        installed_from_wheels=installed,
        spikingjelly=has_sj,
        seconds=None,
    )
    layer_plans = plans(args)
    meta["seconds"] = time.perf_counter() - start
    write_results(meta, tests, results, layer_plans, Path(args.out), args)
    return 0 if tests.get("failed", 0) == 0 else 1


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_results(meta: dict, tests: dict, results: list[dict], layer_plans: list[str], out: Path, args) -> None:
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"gpu-{_slug(meta['device'])}"
    base.with_suffix(".json").write_text(json.dumps(dict(meta=meta, tests=tests, rows=results, plans=layer_plans),
                                                    indent=1))  # fmt: skip
    lines = [
        f"# Measured on {meta['device']}: BNTT VGG9, T={args.num_steps}",
        "",
        f"- command: `{meta['command']}`; torch {meta['torch']}, Triton {meta['triton']}, Python {meta['python']}, "
        f"{meta['date']}; {meta['seconds']:.0f} s in all",
        f"- tests on the device ({tests.get('selection')}): {tests.get('summary', 'not run')}",
        *[f"  - {f}" for f in tests.get("failures", [])],
        "- rows: benchmarks/throughput.py, one process each; train = forward + backward + SGD step, median of "
        f"{args.iters} after {args.warmup} warm-up; peak = torch.cuda.max_memory_allocated over the train steps",
        "",
        "| variant | batch | train img/s | inference img/s | peak MiB | saved for backward MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['row']} | {r['batch']} | failed: {r['error']} | | | |")
            continue
        saved = "–" if r.get("saved_mib") is None else f"{r['saved_mib']:.0f}"
        lines.append(
            f"| {r['label']} | {r['batch']} | {r['train_img_s']:.1f} | {r['infer_img_s']:.1f} | "
            f"{r['peak_mem_mib']:.0f} | {saved} |"
        )
    by = {(r["row"], r["batch"]): r for r in results if "error" not in r}
    ratios = []
    for batch in sorted({b for _, b in by}):
        for ours, other, what in (("c-bf16", "a-bf16", "the snnTorch loop"), ("c-bf16", "e-bf16", "the ReLU ceiling")):
            if (ours, batch) in by and (other, batch) in by:
                o, x = by[ours, batch], by[other, batch]
                ratios.append(
                    f"- B={batch}, bf16: ours / {what}: train {o['train_img_s'] / x['train_img_s']:.2f}x speed, "
                    f"{o['peak_mem_mib'] / x['peak_mem_mib']:.2f}x peak memory"
                )
    lines += ["", "Ratios:", "", *ratios, "", "What ours runs, layer by layer (`bntt_snntorch.kernels.explain`):", ""]
    lines += [f"- {line}" for line in layer_plans]
    lines += ["", "Compare with the projection made without a GPU: [gpu-projection.md](gpu-projection.md)."]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {base}.md")


if __name__ == "__main__":
    sys.exit(main())
