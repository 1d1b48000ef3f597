"""Ahead-of-time compilation of every Triton kernel for real GPU targets, on any machine.

``triton.compile`` lowers a kernel to PTX and (with the ``ptxas`` shipped in Triton's wheel) to a
cubin for a given architecture without a GPU present. This is how the kernels are shown to build
for A100 (sm_80) and H100 (sm_90) on a CPU-only machine; :func:`ptxas_usage` reports their registers
and spills. The variants come from the one list (:data:`bntt_snntorch.definition.VARIANTS`), the
surrogates from :data:`bntt_snntorch.definition.SURROGATES`. Used by tests/test_triton_aot.py and
benchmarks/throughput.py's kernel report (beside which it lives).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from bntt_snntorch.definition import SURROGATES, VARIANTS, Variant
from bntt_snntorch.kernels import triton_bntt as tb
from bntt_snntorch.kernels import triton_scan as ts

INPUT_DTYPES = ("fp32", "bf16", "fp16")  # x / spikes / their gradients; membrane and h stay fp32
SURROGATE_NAMES = tuple(fn.__name__ for fn in SURROGATES)  # index = the surrogate's code


def _source(kernel, pointers: dict, scalars: dict, constexprs: dict) -> ASTSource:
    signature = {k: f"*{v}" for k, v in pointers.items()} | scalars | dict.fromkeys(constexprs, "constexpr")
    return ASTSource(kernel, signature, constexprs=constexprs)


def _codes(variant: Variant) -> dict:
    RESET, DELAYED, SAME = variant.codes
    return dict(RESET=RESET, DELAYED=DELAYED, SAME=SAME)


def scan_forward_source(variant: Variant, dtype: str) -> ASTSource:
    """The leaky scan's forward kernel for ``variant``, input / spikes in ``dtype``."""
    pointers = dict(x_ptr=dtype, m0_ptr="fp32", spk_ptr=dtype, mem_ptr="fp32", h_ptr="fp32", params_ptr="fp32")
    return _source(ts._forward_kernel, pointers, {"T": "i32", "N": "i32"}, {**_codes(variant), "BLOCK": ts.BLOCK})


def scan_backward_source(variant: Variant, surrogate: str, dtype: str) -> ASTSource:
    """The leaky scan's backward kernel for ``variant`` and ``surrogate``, spike / input gradients in ``dtype``."""
    pointers = dict(
        gs_ptr=dtype, gm_ptr="fp32", h_ptr="fp32", mem_ptr="fp32", m0_ptr="fp32", gx_ptr=dtype, gm0_ptr="fp32",
        part_ptr="fp32", params_ptr="fp32",
    )  # fmt: skip
    scalars = {"a": "fp32", "b": "fp32", "T": "i32", "N": "i32", "last": "i32"}
    constexprs = {**_codes(variant), "SURR": SURROGATE_NAMES.index(surrogate), "HAS_GS": True, "HAS_GM": True}
    return _source(ts._backward_kernel, pointers, scalars, constexprs | {"BLOCK": ts.BLOCK})


_LAYOUT = {"T": "i32", "B": "i32", "C": "i32", "L": "i32"}


def bntt_forward_source(variant: Variant, dtype: str) -> ASTSource:
    """The fused BNTT block's forward kernel for ``variant``, synapse output / spikes in ``dtype``."""
    pointers = dict(
        x_ptr=dtype, k_ptr="fp32", shift_ptr="fp32", m0_ptr="fp32", spk_ptr=dtype, mem_ptr="fp32", params_ptr="fp32"
    )
    constexprs = {**_codes(variant), "ROUND": dtype != "fp32", "BLOCK": tb.BLOCK}
    return _source(tb._forward_kernel, pointers, _LAYOUT, constexprs)


def bntt_backward_source(variant: Variant, surrogate: str, dtype: str) -> ASTSource:
    """The fused BNTT block's backward kernel for ``variant`` and ``surrogate``, in ``dtype``."""
    pointers = dict(
        gs_ptr=dtype, x_ptr=dtype, k_ptr="fp32", shift_ptr="fp32", mean_ptr="fp32", m0_ptr="fp32", mem_ptr="fp32",
        dy_ptr=dtype, sums_ptr="fp32", part_ptr="fp32", params_ptr="fp32",
    )  # fmt: skip
    constexprs = {**_codes(variant), "SURR": SURROGATE_NAMES.index(surrogate), "ROUND": dtype != "fp32",
                  "THROUGH_TIME": True}  # fmt: skip
    return _source(
        tb._backward_kernel, pointers, {"a": "fp32", "b": "fp32", **_LAYOUT}, constexprs | {"BLOCK": tb.BLOCK}
    )


def bntt_stats_source(dtype: str) -> ASTSource:
    """The fused BNTT block's statistics kernel, synapse output in ``dtype``."""
    pointers = dict(x_ptr=dtype, mean_ptr="fp32", var_ptr="fp32")
    return _source(tb._stats_kernel, pointers, {"B": "i32", "C": "i32", "L": "i32"}, {"BLOCK": tb.BLOCK})


def bntt_input_grad_source(dtype: str, training: bool) -> ASTSource:
    """The fused BNTT block's batch-norm input-gradient kernel."""
    pointers = dict(dy_ptr=dtype, x_ptr=dtype, k_ptr="fp32", mean_ptr="fp32", rstd_ptr="fp32", moments_ptr="fp32")
    return _source(tb._input_grad_kernel, pointers, _LAYOUT, {"TRAINING": training, "BLOCK": tb.BLOCK})


def all_sources():
    """``(name, source)`` for every kernel specialisation the package ships: scans and BNTT blocks over
    every variant, surrogate and input dtype."""
    for v in VARIANTS:
        for dtype in INPUT_DTYPES:
            yield f"scan-forward-{v.name}-{dtype}", scan_forward_source(v, dtype)
            yield f"bntt-forward-{v.name}-{dtype}", bntt_forward_source(v, dtype)
            for s in SURROGATE_NAMES:
                yield f"scan-backward-{v.name}-{s}-{dtype}", scan_backward_source(v, s, dtype)
                yield f"bntt-backward-{v.name}-{s}-{dtype}", bntt_backward_source(v, s, dtype)
    for dtype in INPUT_DTYPES:
        yield f"bntt-stats-{dtype}", bntt_stats_source(dtype)
        for training in (True, False):
            yield f"bntt-input-grad-{'train' if training else 'eval'}-{dtype}", bntt_input_grad_source(dtype, training)


def compile_for(source: ASTSource, capability: int):
    """Compile ``source`` for CUDA compute capability ``capability`` (80: A100, 90: H100); no GPU needed."""
    return triton.compile(source, target=GPUTarget("cuda", capability, 32))


def ptxas_usage(kernel, capability: int) -> dict:
    """Registers and spill bytes of a compiled kernel, from ``ptxas -v`` (the one in Triton's wheel)."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    arch = f"sm_{capability}a" if capability == 90 else f"sm_{capability}"
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / "kernel.ptx"
        ptx.write_text(kernel.asm["ptx"])
        out = subprocess.run(
            [str(ptxas), "-v", f"--gpu-name={arch}", str(ptx), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
    registers = int(re.search(r"Used (\d+) registers", out).group(1))
    stores, loads = (int(v) for v in re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", out).groups())
    return {"registers": registers, "spill_stores": stores, "spill_loads": loads}
