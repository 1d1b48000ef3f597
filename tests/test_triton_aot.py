"""Every Triton kernel the package ships (leaky scans and the fused BNTT block, over every variant of the one
list, surrogate and input dtype) compiles ahead of time for sm_80 (A100) and sm_90 (H100), on this CPU-only
machine, with the ptxas of Triton's wheel, and spills no register."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="Triton is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import triton_aot as aot  # noqa: E402  (benchmarks/triton_aot.py: where it is used)

pytestmark = pytest.mark.slow
TARGETS = (80, 90)
SOURCES = dict(aot.all_sources())


@pytest.mark.parametrize("capability", TARGETS)
@pytest.mark.parametrize("name", SOURCES)
def test_kernel_compiles(capability, name):
    kernel = aot.compile_for(SOURCES[name], capability)
    assert kernel.metadata.target.arch == capability and len(kernel.asm["cubin"]) > 1000


@pytest.mark.parametrize("capability", TARGETS)
@pytest.mark.parametrize(
    "name",
    [n for n in SOURCES if n.endswith("fp32") and ("atan" in n or "forward" in n or "stats" in n or "grad" in n)],
)
def test_no_register_spills(capability, name):
    usage = aot.ptxas_usage(aot.compile_for(SOURCES[name], capability), capability)
    assert 0 < usage["registers"] <= 255 and usage["spill_stores"] == usage["spill_loads"] == 0, usage
