"""Batch norms with statistics shared over all time steps, the alternatives to BNTT, and the
registry of every temporal normalisation (``@register_norm``, ``create_norm``, ``list_norms``).

All three normalise a sequence ``(T, B, C[, L])`` / ``(T, B, C, H, W)`` with one mean and
variance per channel over ``(T, B[, L | H, W])`` — BNTT keeps one per step instead:

* :class:`BatchNormOverTime2d` — one ``BatchNorm`` over the ``T*B`` batch (the common baseline):
  ``y_t = gamma * x_hat_t + beta``.
* :class:`ThresholdDependentBatchNorm2d` — tdBN (Zheng et al., AAAI 2021):
  ``y_t = lambda * alpha * V_th * x_hat_t + beta`` with ``lambda`` trainable; stored as one
  weight ``lambda * alpha * V_th`` initialised to ``alpha * V_th`` (SpikingJelly's layout).
* :class:`TemporalEffectiveBatchNorm2d` — TEBN (Duan et al., NeurIPS 2022): the shared
  normalisation and affine, then a learnable scale per step, ``y_t = p_t * (gamma * x_hat_t + beta)``.

Step mode (see :mod:`bntt_snntorch.step_mode`): "m" (the default) — ``norm(x_seq)`` runs a
sequence (training and eval); "s" — ``norm(x, t)`` (or ``norm(x)`` with the step counter) runs
one step ``(B, C, ...)``, in eval mode only: the running statistics are then the same for every
step (training statistics need all steps at once). ``norm.step(x, t)`` and
``norm.multi_step(x_seq)`` do the same whatever the mode. State dicts use ``torch.nn.BatchNorm``'s
keys (plus ``scale`` for TEBN), as SpikingJelly's layers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._compat import deprecated, old_attribute
from .accumulated_norm import TemporalAccumulatedBatchNorm1d, TemporalAccumulatedBatchNorm2d
from .bntt import BatchNormTT1d, BatchNormTT2d
from .registry import Registry, RegistryEntry
from .step_mode import StepCounter


class _SharedStatisticsNorm(StepCounter):
    """Mixed into a torch ``BatchNorm``: it normalises the ``(T*B, C, ...)`` batch of a sequence;
    ``time_steps`` bounds the sequence length."""

    _step_shape: str
    default_step_mode = "m"

    def __init__(
        self,
        num_features: int,
        time_steps: int | None,
        eps: float,
        momentum: float,
        weight_init: float = 1.0,
        step_mode: str | None = None,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum)
        nn.init.constant_(self.weight, weight_init)
        self.time_steps = time_steps
        if step_mode is not None:
            self.step_mode = step_mode

    def _step_scale(self, t: int | None, x: torch.Tensor) -> torch.Tensor | None:
        """The per-step factor (``(T', 1, ...)`` for a sequence, a scalar for step ``t``), or None."""
        return None

    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Step mode "m": ``x_seq`` ``(T', B, C, ...)`` -> same shape; "s": one step ``(B, C, ...)``
        (eval mode), step ``t`` or the counter's."""
        if self.step_mode == "s":
            return self.step(x, t)
        if t is not None:
            deprecated("norm(x, t) on a norm in step_mode='m'", stacklevel=2)
            return self.step(x, t)
        return self.multi_step(x)

    def step(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Step ``t`` (or the counter's) of ``x`` ``(B, C, ...)``; eval mode only."""
        name = type(self).__name__
        if self.training:
            raise RuntimeError(
                f"{name}: per-step calls need eval mode (training statistics span all steps); "
                "run the whole sequence: norm.multi_step(x_seq) or step_mode='m'"
            )
        counter = t is None
        t = self._next_step(x) if counter else t
        if self.time_steps is not None and not 0 <= t < self.time_steps:
            raise IndexError(f"{name}: step t must be in [0, {self.time_steps - 1}], got {t}")
        self._check_channels(x, 1, f"one step {self._step_shape}")
        y = super().forward(x)
        scale = self._step_scale(t, y)
        if counter:
            self._advance(x)
        return y if scale is None else y * scale

    def multi_step(self, x: torch.Tensor) -> torch.Tensor:
        """``x_seq`` ``(T', B, C, ...)`` -> the same shape, one set of statistics over ``T' * B``."""
        name = type(self).__name__
        self._check_channels(x, 2, f"a sequence (T, {self._step_shape[1:]}")
        if self.time_steps is not None and x.shape[0] > self.time_steps:
            raise ValueError(
                f"{name}: sequence has {x.shape[0]} steps but the layer was built for "
                f"time_steps={self.time_steps} (got shape {tuple(x.shape)})"
            )
        y = super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        scale = self._step_scale(None, y)
        return y if scale is None else y * scale

    def _check_channels(self, x: torch.Tensor, dim: int, expected: str) -> None:
        if x.dim() <= dim or x.shape[dim] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): expected {expected} with "
                f"C={self.num_features}, got shape {tuple(x.shape)}"
            )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, time_steps={self.time_steps}, eps={self.eps}, momentum={self.momentum}, "
            f"step_mode={self.step_mode!r}"
        )


class _BatchNormOverTime(_SharedStatisticsNorm):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *, step_mode: str | None = None):
        super().__init__(num_features, None, eps, momentum, step_mode=step_mode)


class _ThresholdDependentBatchNorm(_SharedStatisticsNorm):
    def __init__(
        self,
        num_features: int,
        time_steps: int,
        alpha: float = 1.0,
        v_th: float = 1.0,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        step_mode: str | None = None,
    ):
        super().__init__(num_features, time_steps, eps, momentum, weight_init=alpha * v_th, step_mode=step_mode)
        self.alpha, self.v_th = alpha, v_th


class _TemporalEffectiveBatchNorm(_SharedStatisticsNorm):
    def __init__(
        self,
        num_features: int,
        time_steps: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        step_mode: str | None = None,
    ):
        super().__init__(num_features, time_steps, eps, momentum, step_mode=step_mode)
        self.scale = nn.Parameter(torch.ones(time_steps))

    @property
    def gammas(self) -> torch.Tensor:
        """The per-step scales ``p_t`` broadcast to ``(time_steps, num_features)`` (a detached copy)."""
        return self.scale.detach()[:, None].expand(-1, self.num_features).clone()

    def _step_scale(self, t: int | None, y: torch.Tensor) -> torch.Tensor:
        if t is not None:
            return self.scale[t]
        return self.scale[: y.shape[0]].view(-1, *[1] * (y.dim() - 1))


class BatchNormOverTime1d(_BatchNormOverTime, nn.BatchNorm1d):
    """One ``BatchNorm1d`` shared over all steps: ``(T, B, C)`` / ``(T, B, C, L)`` sequences."""

    _step_shape = "(B, C[, L])"


class BatchNormOverTime2d(_BatchNormOverTime, nn.BatchNorm2d):
    """One ``BatchNorm2d`` shared over all steps: ``(T, B, C, H, W)`` sequences."""

    _step_shape = "(B, C, H, W)"


class ThresholdDependentBatchNorm1d(_ThresholdDependentBatchNorm, nn.BatchNorm1d):
    """tdBN for ``(T, B, C)`` / ``(T, B, C, L)``: shared statistics, weight initialised to ``alpha * v_th``."""

    _step_shape = "(B, C[, L])"


class ThresholdDependentBatchNorm2d(_ThresholdDependentBatchNorm, nn.BatchNorm2d):
    """tdBN for ``(T, B, C, H, W)``: shared statistics, weight initialised to ``alpha * v_th``."""

    _step_shape = "(B, C, H, W)"


class TemporalEffectiveBatchNorm1d(_TemporalEffectiveBatchNorm, nn.BatchNorm1d):
    """TEBN for ``(T, B, C)`` / ``(T, B, C, L)``: shared statistics and affine, learnable scale per step."""

    _step_shape = "(B, C[, L])"


class TemporalEffectiveBatchNorm2d(_TemporalEffectiveBatchNorm, nn.BatchNorm2d):
    """TEBN for ``(T, B, C, H, W)``: shared statistics and affine, learnable scale per step."""

    _step_shape = "(B, C, H, W)"


# -- the registry ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NormInfo(RegistryEntry):
    """A registered normalisation: ``factory(num_features, num_steps, dims, **options)`` builds
    the layer (``None`` for no normalisation); ``dims`` is 1 for ``(B, C)`` steps, 2 for
    ``(B, C, H, W)``."""

    label: str = ""  # its name in tables and plots (default: its name)
    per_step_statistics: bool = False  # step t is normalised with statistics of step t alone (online training)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


NORM_REGISTRY: Registry[NormInfo] = Registry("norm", NormInfo)
register_norm = NORM_REGISTRY.register  # @register_norm, @register_norm(label=..., per_step_statistics=True)
norm_info = NORM_REGISTRY.get
list_norms = NORM_REGISTRY.names


def create_norm(name: str, num_features: int, num_steps: int, dims: int, **options) -> nn.Module | None:
    """The registered normalisation ``name`` for ``dims``-d features (1: ``(B, C)``, 2: ``(B, C, H, W)``)
    over ``num_steps`` steps; ``options`` go to its factory (e.g. BNTT's ``eps``)."""
    return norm_info(name).factory(num_features, num_steps, dims, **options)


@register_norm(label="BNTT", per_step_statistics=True)
def bntt(num_features: int, num_steps: int, dims: int, eps: float = 1e-5) -> BatchNormTT1d | BatchNormTT2d:
    """Batch Normalization Through Time: statistics and gamma per step (Kim & Panda 2020)."""
    return (BatchNormTT1d if dims == 1 else BatchNormTT2d)(num_features, num_steps, eps=eps)


@register_norm(label="BN over T*B")
def bn(num_features: int, num_steps: int, dims: int) -> nn.Module:
    """One batch norm over all steps (statistics over the T*B batch)."""
    return (BatchNormOverTime1d if dims == 1 else BatchNormOverTime2d)(num_features)


@register_norm(label="tdBN")
def tdbn(num_features: int, num_steps: int, dims: int) -> nn.Module:
    """Threshold-dependent batch norm (Zheng et al. 2021): shared statistics, weight alpha * V_th."""
    return (ThresholdDependentBatchNorm1d if dims == 1 else ThresholdDependentBatchNorm2d)(num_features, num_steps)


@register_norm(label="TEBN")
def tebn(num_features: int, num_steps: int, dims: int) -> nn.Module:
    """Temporal effective batch norm (Duan et al. 2022): shared statistics, a learnable scale per step."""
    return (TemporalEffectiveBatchNorm1d if dims == 1 else TemporalEffectiveBatchNorm2d)(num_features, num_steps)


@register_norm(label="TAB")
def tab(num_features: int, num_steps: int, dims: int, eps: float = 1e-5) -> nn.Module:
    """Temporal accumulated batch norm (Jiang et al. 2024): step t normalised with the statistics of steps
    0..t, its own affine and a learnable p_t^2."""
    layer = TemporalAccumulatedBatchNorm1d if dims == 1 else TemporalAccumulatedBatchNorm2d
    return layer(num_features, num_steps, eps)


@register_norm(label="none", per_step_statistics=True)
def none(num_features: int, num_steps: int, dims: int) -> None:
    """No normalisation."""
    return None


def _old_temporal_norm(kind: str, num_features: int, time_steps: int, dims: int, bntt_eps: float = 1e-5):
    """0.1's ``temporal_norm(kind, num_features, time_steps, dims, bntt_eps)``."""
    return create_norm(kind, num_features, time_steps, dims, **({"eps": bntt_eps} if kind == "bntt" else {}))


def __getattr__(name: str):
    return old_attribute(__name__, name, {"temporal_norm": lambda: _old_temporal_norm,
                                          "NORMS": lambda: tuple(list_norms())})  # fmt: skip
