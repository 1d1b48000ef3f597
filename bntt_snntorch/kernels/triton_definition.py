"""The neuron definition (:mod:`bntt_snntorch.definition`) compiled for Triton from its own source.

Each function of :data:`bntt_snntorch.definition.DEFINITIONS` is re-executed from its source text in a
namespace where the primitives (``relu``, ``exp``, ``abs``) are Triton functions and the other
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


def _compile_definitions() -> types.ModuleType:
    namespace = {"__name__": __name__ + ".generated", "relu": _relu, "exp": _exp, "abs": _abs, "tl": tl}
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
