"""Spike functions with an analytic surrogate derivative.

Each object here is callable like a ``snntorch.surrogate`` function
(``spk = spike_grad(mem - threshold)``: a Heaviside step forward, the
surrogate derivative backward), so it can be passed as ``spike_grad`` to
``snn.Leaky`` and to :class:`bntt_snntorch.MultiStepLeaky` alike. Because the
derivative is known in closed form (:meth:`Surrogate.derivative`), fused
kernels can evaluate it without autograd.
"""

from __future__ import annotations

import math

import torch


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
    """Heaviside forward, ``derivative(x)`` backward; ``x`` is ``mem - threshold``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _SpikeFunction.apply(x, self)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative_(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`derivative`, allowed to overwrite ``x`` (fused kernels pass a temporary)."""
        return self.derivative(x)

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

    def __init__(self, scale: float = 0.3, width: float = 1.0):
        self.scale = float(scale)
        self.width = float(width)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale / self.width * torch.clamp(1.0 - x.abs() / self.width, min=0.0)

    def derivative_(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs_().sub_(self.width).clamp_(max=0.0).mul_(-self.scale / self.width**2)


class ATan(Surrogate):
    """snnTorch's default: ``alpha / 2 / (1 + (pi / 2 * alpha * x) ** 2)``."""

    def __init__(self, alpha: float = 2.0):
        self.alpha = float(alpha)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x) ** 2)


class FastSigmoid(Surrogate):
    """``1 / (slope * |x| + 1) ** 2``, as ``snntorch.surrogate.fast_sigmoid``."""

    def __init__(self, slope: float = 25.0):
        self.slope = float(slope)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 / (self.slope * x.abs() + 1.0) ** 2


class Sigmoid(Surrogate):
    """``slope * e^(-slope x) / (e^(-slope x) + 1) ** 2``, as ``snntorch.surrogate.sigmoid``."""

    def __init__(self, slope: float = 25.0):
        self.slope = float(slope)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.slope * x)
        return self.slope * s * (1 - s)


class StraightThrough(Surrogate):
    """Gradient passed through unchanged, as ``snntorch.surrogate.straight_through_estimator``."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


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
