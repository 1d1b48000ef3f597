"""The Triton kernels on this CPU-only machine: tests/test_kernels.py's Triton scan cases and
tests/test_triton_bntt.py's block cases, run by Triton's interpreter in a subprocess
(``TRITON_INTERPRET=1`` must be set before Triton is imported). Every run (CI too) takes the Triton
scan cases and the block's representative subset (the cases named ``quick``, every variant); the
block's full matrix (about 3.5 minutes on 2 cores) runs where ``BNTT_TEST_FULL_MATRIX=1`` is set, and
natively on a GPU in ``benchmarks/gpu_check.py``."""

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


def _interpreted(*args: str) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "1", "BNTT_KERNELS": "eager"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(ON_INTERPRETER, reason="already inside the interpreter run")
def test_triton_scans_and_block_subset_under_the_interpreter():
    out = _interpreted(
        "tests/test_triton_bntt.py", "tests/test_kernels.py", "-k", "quick or (triton and not test_triton_bntt)"
    )
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= 7 + 7 + 2 + 2 + 29 and "skipped" not in out, out[-500:]


@pytest.mark.slow
@pytest.mark.skipif(ON_INTERPRETER, reason="already inside the interpreter run")
@pytest.mark.skipif(not FULL_MATRIX, reason="the block's full matrix runs with BNTT_TEST_FULL_MATRIX=1 (3.5 min)")
def test_triton_block_full_matrix_under_the_interpreter():
    out = _interpreted("tests/test_triton_bntt.py", "-k", "full")
    assert "skipped" not in out.splitlines()[-1] and "failed" not in out, out[-500:]
