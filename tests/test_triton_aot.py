"""Every Triton kernel variant the package ships compiles ahead of time for sm_80 (A100) and sm_90 (H100),
on this CPU-only machine, with the ptxas of Triton's wheel: no GPU needed to know the kernels build."""

import itertools

import pytest

aot = pytest.importorskip("bntt_snntorch.kernels.triton_aot", reason="Triton is not installed")

pytestmark = pytest.mark.slow
TARGETS = (80, 90)
FORWARD = list(itertools.product(aot.MODES, aot.INPUT_DTYPES))
BACKWARD = list(itertools.product(aot.MODES, aot.SURROGATES, aot.INPUT_DTYPES))


def _id(mode) -> str:
    return f"{mode.reset}-{'delayed' if mode.delayed_reset else 'now'}-{mode.same_step_reset}"


@pytest.mark.parametrize("capability", TARGETS)
@pytest.mark.parametrize("mode,dtype", FORWARD, ids=[f"{_id(m)}-{d}" for m, d in FORWARD])
def test_forward_kernel_compiles(capability, mode, dtype):
    kernel = aot.compile_for(aot.forward_source(mode, dtype), capability)
    assert kernel.metadata.target.arch == capability and len(kernel.asm["cubin"]) > 1000


@pytest.mark.parametrize("capability", TARGETS)
@pytest.mark.parametrize("mode,surrogate,dtype", BACKWARD, ids=[f"{_id(m)}-{s}-{d}" for m, s, d in BACKWARD])
def test_backward_kernel_compiles(capability, mode, surrogate, dtype):
    kernel = aot.compile_for(aot.backward_source(mode, surrogate, dtype), capability)
    assert kernel.metadata.target.arch == capability and len(kernel.asm["cubin"]) > 1000


@pytest.mark.parametrize("capability", TARGETS)
def test_register_report(capability):
    usage = aot.ptxas_usage(aot.compile_for(aot.backward_source(aot.MODES[0], "atan", "fp32"), capability), capability)
    assert 0 < usage["registers"] <= 255 and usage["spill_stores"] == usage["spill_loads"] == 0
