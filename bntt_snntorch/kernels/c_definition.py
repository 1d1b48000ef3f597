"""The definition (:mod:`bntt_snntorch.definition`) written out as C functions from its own source.

Each function of :data:`bntt_snntorch.definition.DEFINITIONS` is re-executed from its source text in a
namespace where the primitives (``relu``, ``exp``, ``sqrt``, ``clamp``, ``lerp``, the casts ``wide`` / ``single``
/ ``like``, and the builtin ``abs`` through ``__abs__``) build C code, then called on :class:`Expr` placeholders:
the variant codes are Python constants, so every branch resolves and what comes back is the C expression of one
formula (float or double arithmetic as C would do it, comparisons as ``1.0f`` / ``0.0f``). :func:`header` writes
the functions :data:`GENERATED` names as ``static inline`` C functions of one :class:`Build` (``definition.h``), which
the hand-written loops of ``csrc/bntt.c`` call: the formulas exist once, in :mod:`bntt_snntorch.definition`, as
for the Triton kernels (:mod:`.triton_definition`).
"""

from __future__ import annotations

import inspect
import types
from typing import NamedTuple

from .. import definition


def literal(value, double: bool = False) -> str:
    """A Python number as a C literal: float (rounded to float32 as torch rounds a scalar against a float32
    tensor), or double where the other operand is one."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"no C float literal for {value!r}")
    return text if double else text + "f"


def code(value, double: bool = False) -> str:
    """C source of an :class:`Expr` or a Python number (a double literal where ``double``)."""
    return value.code if isinstance(value, Expr) else literal(value, double)


def _double(*values) -> bool:
    return any(isinstance(v, Expr) and v.double for v in values)


class Expr:
    """A C expression of type float (or ``double``); arithmetic on it (with numbers or other expressions) builds a
    larger one, of type double where either operand is one."""

    __slots__ = ("code", "double")
    dtype = None  # what ``fire``'s ``.to(v.dtype)`` asks for: the comparison becomes a float

    def __init__(self, source: str, double: bool = False):
        self.code = source
        self.double = double

    def _binary(self, a, op: str, b) -> Expr:
        double = _double(a, b)
        return Expr(f"({code(a, double)} {op} {code(b, double)})", double)

    def __add__(self, other):
        return self._binary(self, "+", other)

    def __radd__(self, other):
        return self._binary(other, "+", self)

    def __sub__(self, other):
        return self._binary(self, "-", other)

    def __rsub__(self, other):
        return self._binary(other, "-", self)

    def __mul__(self, other):
        return self._binary(self, "*", other)

    def __rmul__(self, other):
        return self._binary(other, "*", self)

    def __truediv__(self, other):
        return self._binary(self, "/", other)

    def __rtruediv__(self, other):
        return self._binary(other, "/", self)

    def __neg__(self):
        return Expr(f"(-{self.code})", self.double)

    def __abs__(self):
        return Expr(f"{'fabs' if self.double else 'fabsf'}({self.code})", self.double)

    def __gt__(self, other):
        return _Comparison(f"({self.code} > {code(other, self.double)})")

    def __lt__(self, other):
        return _Comparison(f"({self.code} < {code(other, self.double)})")


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


def _sqrt(z):
    return Expr(f"sqrt({z.code})", True) if _double(z) else Expr(f"sqrtf({code(z)})")


def _clamp(v, low, high):
    return Expr(f"fminf(fmaxf({code(v)}, {code(low)}), {code(high)})")


def _lerp(start, end, weight):
    return Expr(f"lerp_like_torch({code(start)}, {code(end)}, {code(weight)})")


def _wide(v):
    return Expr(f"((double){code(v)})", True)


def _single(v):
    return Expr(f"((float){code(v)})")


def _like(v, x):
    return _wide(v) if _double(x) else _single(v)


_PRIMITIVES = {"relu": _relu, "exp": _exp, "sqrt": _sqrt, "clamp": _clamp, "lerp": _lerp, "wide": _wide,
               "single": _single, "like": _like}  # fmt: skip


def _definitions() -> types.ModuleType:
    namespace = {"__name__": __name__ + ".generated", **_PRIMITIVES}
    for fn in definition.DEFINITIONS:
        exec(compile(inspect.getsource(fn), f"<bntt_snntorch.definition.{fn.__name__} for C>", "exec"), namespace)
    module = types.ModuleType(__name__ + ".C", "The definition building C expressions.")
    for fn in definition.DEFINITIONS:
        setattr(module, fn.__name__, namespace[fn.__name__])
    return module


#: ``C.forward_step``, ``C.backward_step``, ``C.surrogate_derivative``, ...: the definition building C code.
C = _definitions()

#: Parameters that are C doubles (sums kept in double, counts, batch norm's eps); every other one is a float.
DOUBLES = frozenset({"total", "squares", "count", "eps", "sum_dy", "sum_centred"})

#: The definition's functions the C loops call, with the names of their outputs (written through pointers) where
#: they return several values.
GENERATED: dict[str, tuple[str, ...]] = {
    "clamp_leak": (),
    "batch_mean": (),
    "squared_deviation": (),
    "batch_variance": (),
    "unbiased_variance": (),
    "running_update": (),
    "inverse_std": (),
    "coefficients": ("k", "shift"),
    "normalise": (),
    "forward_step": ("h", "m", "spk"),
    "surrogate_derivative": (),
    "backward_step": ("delta_h", "carry", "beta_term", "theta_term"),
    "centred_gradient": (),
    "gradient_moments": ("sum_dy_xhat", "mean_dy", "mean_dy_xhat"),
    "normalise_input_grad": (),
}


class Build(NamedTuple):
    """What one build of the loops is specialised for: the neuron's ``codes`` ``(RESET, DELAYED, SAME)``, the
    surrogate ``(SURR, a, b)``, batch norm in ``training`` (the statistics' dependence on the input in the
    backward), and ``through_time`` (the gradient carried from step t + 1 to step t; not by the online rules)."""

    codes: tuple[int, bool, int]
    surrogate: tuple[int, float, float]
    training: bool
    through_time: bool = True

    def constants(self) -> dict:
        """The values of the definition's compile-time parameters for this build."""
        (RESET, DELAYED, SAME), (SURR, a, b) = self.codes, self.surrogate
        return dict(RESET=RESET, DELAYED=bool(DELAYED), SAME=SAME, SURR=SURR, a=a, b=b, TRAINING=self.training,
                    ROUND=False)  # fmt: skip


def _c_function(name: str, outputs: tuple[str, ...], constants: dict) -> str:
    """One definition function as a ``static inline`` C function (its compile-time parameters fixed)."""
    parameters = [p for p in inspect.signature(getattr(definition, name)).parameters if p not in constants]
    arguments = {p: constants[p] if p in constants else Expr(p, p in DOUBLES) for p in inspect.signature(
        getattr(definition, name)).parameters}  # fmt: skip
    result = getattr(C, name)(**arguments)
    declared = ", ".join(f"{'double' if p in DOUBLES else 'float'} {p}" for p in parameters)
    if not outputs:
        kind = "double" if _double(result) else "float"
        return f"BNTT_INLINE {kind} {name}({declared}) {{\n  return {code(result)};\n}}\n"
    pointers = ", ".join(f"{'double' if _double(r) else 'float'}* {o}" for o, r in zip(outputs, result))
    body = "".join(f"  *{o} = {code(r)};\n" for o, r in zip(outputs, result))
    return f"BNTT_INLINE void {name}({declared}, {pointers}) {{\n{body}}}\n"


def header(build: Build) -> str:
    """``definition.h`` for the loops of ``variant``: the :data:`GENERATED` functions and ``THROUGH_TIME``."""
    lines = [
        f"/* Generated by bntt_snntorch/kernels/c_definition.py from bntt_snntorch/definition.py for {build}. */",
        "#ifndef BNTT_DEFINITION_H",
        "#define BNTT_DEFINITION_H",
        '#include "common.h"',
        f"#define THROUGH_TIME {int(build.through_time)}",
    ]
    constants = build.constants()
    functions = [_c_function(name, outputs, constants) for name, outputs in GENERATED.items()]
    return "\n".join(lines) + "\n\n" + "\n".join(functions) + "\n#endif\n"
