"""Ahead-of-time compilation of the Triton leaky-scan kernels for real GPU targets, on any machine.

``triton.compile`` lowers a kernel to PTX and (with the ``ptxas`` shipped in Triton's wheel) to
a cubin for a given architecture without a GPU present. This is how the kernels are shown to
build for A100 (sm_80) and H100 (sm_90) on a CPU-only machine; :func:`ptxas_usage` reports
their registers and spills.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import triton_scan as ts
from .scan_math import ScanMode

#: Every static variant of the leaky update the scans ship (reset, delayed reset, same-step reset).
MODES = (
    ScanMode("subtract", True, "none"),
    ScanMode("subtract", True, "snn"),
    ScanMode("zero", True, "none"),
    ScanMode("zero", True, "snn"),
    ScanMode("none", False, "none"),
    ScanMode("subtract", False, "detached"),
    ScanMode("zero", False, "detached"),
)
INPUT_DTYPES = ("fp32", "bf16", "fp16")  # x / spikes / their gradients; membrane and h stay fp32
SURROGATES = {"bntt_triangle": 0, "atan": 1, "fast_sigmoid": 2, "sigmoid": 3, "straight_through": 4}


def forward_source(mode: ScanMode, dtype: str) -> ASTSource:
    """The forward kernel specialised for ``mode`` with input / spikes in ``dtype``."""
    pointers = {
        "x_ptr": dtype,
        "m0_ptr": "fp32",
        "spk_ptr": dtype,
        "mem_ptr": "fp32",
        "h_ptr": "fp32",
        "beta_ptr": "fp32",
        "theta_ptr": "fp32",
        "g_ptr": "fp32",
    }
    signature = {k: f"*{v}" for k, v in pointers.items()} | {"T": "i32", "N": "i32"}
    constexprs = {**ts._mode_args(mode), "BLOCK": ts.BLOCK}
    return ASTSource(ts._forward_kernel, signature | dict.fromkeys(constexprs, "constexpr"), constexprs=constexprs)


def backward_source(mode: ScanMode, surrogate: str, dtype: str) -> ASTSource:
    """The backward kernel specialised for ``mode`` and ``surrogate``, spike / input gradients in ``dtype``."""
    pointers = {
        "gs_ptr": dtype,
        "gm_ptr": "fp32",
        "h_ptr": "fp32",
        "mem_ptr": "fp32",
        "m0_ptr": "fp32",
        "gx_ptr": dtype,
        "gm0_ptr": "fp32",
        "gbeta_ptr": "fp32",
        "gtheta_ptr": "fp32",
        "beta_ptr": "fp32",
        "theta_ptr": "fp32",
        "g_ptr": "fp32",
    }
    scalars = {"a": "fp32", "b": "fp32", "T": "i32", "N": "i32", "last": "i32"}
    constexprs = {
        **ts._mode_args(mode),
        "SURR": SURROGATES[surrogate],
        "HAS_GS": True,
        "HAS_GM": True,
        "BLOCK": ts.BLOCK,
    }
    signature = {k: f"*{v}" for k, v in pointers.items()} | scalars | dict.fromkeys(constexprs, "constexpr")
    return ASTSource(ts._backward_kernel, signature, constexprs=constexprs)


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
