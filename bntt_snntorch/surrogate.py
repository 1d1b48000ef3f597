"""Spike functions with an analytic surrogate derivative.

Each object here is callable like a ``snntorch.surrogate`` function
(``spk = spike_grad(mem - threshold)``: a Heaviside step forward, the
surrogate derivative backward), so it can be passed as ``spike_grad`` to
``snn.Leaky`` and to :class:`bntt_snntorch.MultiStepLeaky` alike. Because the
derivative is known in closed form (:meth:`Surrogate.derivative`, written once in
:mod:`bntt_snntorch.definition`), fused kernels can evaluate it without autograd.
"""

from __future__ import annotations

import torch

from . import definition


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(x), None


class Surrogate:
    """Heaviside forward, ``derivative(x)`` backward; ``x`` is ``mem - threshold``.

    A subclass names its derivative in :mod:`bntt_snntorch.definition` (``code``: its index in
    ``SURROGATES``) and its two parameters (:meth:`args`); every kernel evaluates that one formula.
    """

    code: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SpikeFunction.apply(x, self)

    def args(self) -> tuple[float, float]:
        """The definition's two parameters ``(a, b)``."""
        return 0.0, 0.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at ``x`` (:data:`bntt_snntorch.definition.SURROGATES` ``[code]``)."""
        return definition.SURROGATES[self.code](x, *self.args())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


class BNTTTriangle(Surrogate):
    """The BNTT seed's surrogate: ``scale * max(0, 1 - |x| / width) / width``.

    With ``width = threshold`` this is the original code's
    ``0.3 * max(0, 1 - |U/theta - 1|)`` taken with respect to ``U``.
    """

    code = 0

    def __init__(self, scale: float = 0.3, width: float = 1.0):
        self.scale = float(scale)
        self.width = float(width)

    def args(self) -> tuple[float, float]:
        return self.scale, self.width


class ATan(Surrogate):
    """snnTorch's default: ``alpha / 2 / (1 + (pi / 2 * alpha * x) ** 2)``."""

    code = 1

    def __init__(self, alpha: float = 2.0):
        self.alpha = float(alpha)

    def args(self) -> tuple[float, float]:
        return self.alpha, 0.0


class FastSigmoid(Surrogate):
    """``1 / (slope * |x| + 1) ** 2``, as ``snntorch.surrogate.fast_sigmoid``."""

    code = 2

    def __init__(self, slope: float = 25.0):
        self.slope = float(slope)

    def args(self) -> tuple[float, float]:
        return self.slope, 0.0


class Sigmoid(Surrogate):
    """``slope * e^(-slope x) / (e^(-slope x) + 1) ** 2``, as ``snntorch.surrogate.sigmoid``."""

    code = 3

    def __init__(self, slope: float = 25.0):
        self.slope = float(slope)

    def args(self) -> tuple[float, float]:
        return self.slope, 0.0


class StraightThrough(Surrogate):
    """Gradient passed through unchanged, as ``snntorch.surrogate.straight_through_estimator``."""

    code = 4


def from_code(code: int, a: float, b: float) -> Surrogate:
    """The surrogate of code ``code`` with the definition's parameters ``(a, b)`` (:meth:`Surrogate.args`)."""
    build = {0: lambda: BNTTTriangle(a, b), 1: lambda: ATan(a), 2: lambda: FastSigmoid(a), 3: lambda: Sigmoid(a),
             4: StraightThrough}  # fmt: skip
    return build[code]()


def bntt_triangle(scale: float = 0.3, width: float = 1.0) -> BNTTTriangle:
    """The BNTT seed's triangle surrogate (see :class:`BNTTTriangle`)."""
    return BNTTTriangle(scale, width)


def atan(alpha: float = 2.0) -> ATan:
    """snnTorch's default arc-tangent surrogate (see :class:`ATan`)."""
    return ATan(alpha)


def fast_sigmoid(slope: float = 25.0) -> FastSigmoid:
    """Fast-sigmoid surrogate (see :class:`FastSigmoid`)."""
    return FastSigmoid(slope)


def sigmoid(slope: float = 25.0) -> Sigmoid:
    """Sigmoid surrogate (see :class:`Sigmoid`)."""
    return Sigmoid(slope)


def straight_through() -> StraightThrough:
    """Straight-through estimator (see :class:`StraightThrough`)."""
    return StraightThrough()
