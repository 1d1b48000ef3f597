"""The prepared GPU check: on a machine without a GPU it says so in one line and exits 0; its GPU branch
(tests, rows, results files) runs end to end on this CPU in self-test mode (tiny sizes, Triton's
interpreter, the eager CPU kernels)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would measure it")
def test_gpu_check_without_a_gpu_prints_one_line_and_exits_0():
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.count("\n") == 1 and "no CUDA GPU" in result.stdout


@pytest.mark.slow
def test_gpu_check_self_test_writes_its_results(tmp_path):
    argv = ["--self-test", "--tests", "none", "--batch-sizes", "2", "--num-steps", "2", "--iters", "1"]
    argv += ["--warmup", "0", "--rows", "a,c", "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (report,) = tmp_path.glob("gpu-*.json")
    saved = json.loads(report.read_text())
    assert [r["row"] for r in saved["rows"]] == ["a", "c"] and all("train_img_s" in r for r in saved["rows"])
    assert len(saved["plans"]) == 8 and report.with_suffix(".md").is_file()
