"""The neuron definition (:mod:`bntt_snntorch.definition`) compiled for Triton from its own source.

Each function of :data:`bntt_snntorch.definition.DEFINITIONS` is re-executed from its source text in a
namespace where the primitives (``relu``, ``exp``, ``abs``, ``sqrt``, ``clamp``, ``lerp``, the casts ``wide`` /
``single`` / ``like``) are Triton functions and the other
definitions are their Triton versions, then wrapped in ``triton.jit``. The kernels call these:
the formulas exist once, in :mod:`bntt_snntorch.definition`. Import this module only where Triton is installed.
"""

from __future__ import annotations

import inspect
import linecache
import types

import triton
import triton.language as tl

from .. import definition


@triton.jit
def _relu(z):
    return tl.maximum(z, 0.0)


@triton.jit
def _exp(z):
    return tl.exp(z)


@triton.jit
def _abs(z):
    return tl.abs(z)


@triton.jit
def _sqrt(z):
    return tl.sqrt(z)


@triton.jit
def _clamp(v, low, high):
    return tl.minimum(tl.maximum(v, low), high)


@triton.jit
def _lerp(start, end, weight):
    # as torch's CPU kernel and the C loops round it: one fused multiply-add from the nearer end
    return tl.where(tl.abs(weight) < 0.5, tl.fma(weight, end - start, start), tl.fma(weight - 1.0, end - start, end))


@triton.jit
def _wide(v):
    return v.to(tl.float64)


@triton.jit
def _single(v):
    return v.to(tl.float32)


@triton.jit
def _like(v, x):
    return v.to(x.dtype)


def _compile_definitions() -> types.ModuleType:
    namespace = {"__name__": __name__ + ".generated", "relu": _relu, "exp": _exp, "abs": _abs, "sqrt": _sqrt,
                 "clamp": _clamp, "lerp": _lerp, "wide": _wide, "single": _single, "like": _like, "tl": tl}  # fmt: skip
    for fn in definition.DEFINITIONS:
        source = inspect.getsource(fn)
        filename = f"<bntt_snntorch.kernels.definition.{fn.__name__} for Triton>"
        # triton.jit reads the function's source through inspect, which reads linecache
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)
        namespace[fn.__name__] = triton.jit(namespace[fn.__name__])
    module = types.ModuleType(__name__ + ".T", "The neuron definition as Triton functions.")  # kernels read D.<name>
    for fn in definition.DEFINITIONS:
        setattr(module, fn.__name__, namespace[fn.__name__])
    return module


#: ``T.forward_step``, ``T.backward_step``, ``T.surrogate_derivative``, ...: the definition as Triton functions.
T = _compile_definitions()
