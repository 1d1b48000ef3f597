"""The neuron definition (:mod:`bntt_snntorch.definition`) written out as C expressions from its own source.

Each function of :data:`bntt_snntorch.definition.DEFINITIONS` is re-executed from its source text in a
namespace where the primitives (``relu``, ``exp``, and the builtin ``abs`` through ``__abs__``) build C
code, then called on :class:`Expr` placeholders: the variant codes are Python constants, so every branch
resolves and what comes back is the C expression of one formula (float32 arithmetic, comparisons as
``1.0f`` / ``0.0f``). :mod:`.c_bntt` pastes these expressions into its loops: the formulas exist once, in
:mod:`bntt_snntorch.definition`, as for the Triton kernels (:mod:`.triton_definition`).
"""

from __future__ import annotations

import inspect
import types

from .. import definition


def literal(value) -> str:
    """A Python number as a C float literal (rounded to float32 as torch rounds a scalar against a float32 tensor)."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"no C float literal for {value!r}")
    return text + "f"


def code(value) -> str:
    """C source of an :class:`Expr` or a Python number."""
    return value.code if isinstance(value, Expr) else literal(value)


class Expr:
    """A float C expression; arithmetic on it (with numbers or other expressions) builds a larger one."""

    __slots__ = ("code",)
    dtype = None  # what ``fire``'s ``.to(v.dtype)`` asks for: the comparison becomes a float

    def __init__(self, source: str):
        self.code = source

    def __add__(self, other):
        return Expr(f"({code(self)} + {code(other)})")

    def __radd__(self, other):
        return Expr(f"({code(other)} + {code(self)})")

    def __sub__(self, other):
        return Expr(f"({code(self)} - {code(other)})")

    def __rsub__(self, other):
        return Expr(f"({code(other)} - {code(self)})")

    def __mul__(self, other):
        return Expr(f"({code(self)} * {code(other)})")

    def __rmul__(self, other):
        return Expr(f"({code(other)} * {code(self)})")

    def __truediv__(self, other):
        return Expr(f"({code(self)} / {code(other)})")

    def __rtruediv__(self, other):
        return Expr(f"({code(other)} / {code(self)})")

    def __neg__(self):
        return Expr(f"(-{code(self)})")

    def __abs__(self):
        return Expr(f"fabsf({code(self)})")

    def __gt__(self, other):
        return _Comparison(f"({code(self)} > {code(other)})")

    def __lt__(self, other):
        return _Comparison(f"({code(self)} < {code(other)})")


class _Comparison:
    __slots__ = ("code",)

    def __init__(self, source: str):
        self.code = source

    def to(self, dtype) -> Expr:
        return Expr(f"({self.code} ? 1.0f : 0.0f)")


def _relu(z):
    # a comparison, not fmaxf: GCC vectorises a select, but calls fmaxf one element at a time (NaN gives 0 either way)
    return Expr(f"({code(z)} > 0.0f ? {code(z)} : 0.0f)")


def _exp(z):
    return Expr(f"expf({code(z)})")


def _definitions() -> types.ModuleType:
    namespace = {"__name__": __name__ + ".generated", "relu": _relu, "exp": _exp}
    for fn in definition.DEFINITIONS:
        exec(compile(inspect.getsource(fn), f"<bntt_snntorch.definition.{fn.__name__} for C>", "exec"), namespace)
    module = types.ModuleType(__name__ + ".C", "The neuron definition building C expressions.")
    for fn in definition.DEFINITIONS:
        setattr(module, fn.__name__, namespace[fn.__name__])
    return module


#: ``C.forward_step``, ``C.backward_step``, ``C.surrogate_derivative``, ...: the definition building C code.
C = _definitions()
