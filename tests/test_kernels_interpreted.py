"""The Triton kernels on this CPU-only machine, run by Triton's interpreter in a subprocess (``TRITON_INTERPRET=1``
must be set before Triton is imported): tests/test_kernels.py's Triton scan cases, the Triton entry of
tests/test_backends.py (the harness every backend of the table runs: training, eval, the online rule, bf16) and
tests/test_triton_bntt.py's own pieces. Every run (CI too) takes the scans and the block's cases in training, in
the online rule and in bf16, and the block's own pieces but the whole model (under a minute on 2 cores); the
eval cases and the whole model too (2 minutes) where ``BNTT_TEST_FULL_MATRIX=1`` is set, and natively on a GPU in
``benchmarks/gpu_check.py``."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not installed (it ships with CUDA builds of torch)")
HERE = Path(__file__).parent
ON_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
FULL_MATRIX = os.environ.get("BNTT_TEST_FULL_MATRIX") == "1"
SELECTED = "bntt-triton or test_triton_bntt or (triton and test_kernels)"
LEFT_TO_THE_FULL_MATRIX = "" if FULL_MATRIX else " and not (bntt-triton and eval) and not whole_model"


def _interpreted(*args: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1", "BNTT_KERNELS": "eager"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(ON_INTERPRETER, reason="already inside the interpreter run")
def test_triton_scans_and_block_under_the_interpreter():
    out = _interpreted("tests/test_backends.py", "tests/test_triton_bntt.py", "tests/test_kernels.py", "-k",
                       f"({SELECTED}){LEFT_TO_THE_FULL_MATRIX}")  # fmt: skip
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= (110 if FULL_MATRIX else 81) and "skipped" not in out, out[-500:]
