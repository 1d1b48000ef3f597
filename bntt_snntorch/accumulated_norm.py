"""TAB: Temporal Accumulated Batch Normalization (Jiang et al., ICLR 2024).

At step ``t`` the input ``x_t`` is normalised with the statistics of the *prefix* ``x_0 .. x_t``
(per channel, over the batch, steps ``0..t`` and the spatial positions), then scaled and shifted by
step ``t``'s own affine and by a learnable ``p_t^2`` (``p`` initialised to 1)::

    y_t = p_t^2 * (weight_t * (x_t - mean_{0..t}) / sqrt(var_{0..t} + eps) + bias_t)

Running statistics are kept per step and updated as ``BatchNorm3d`` over the prefix does (the prefix's
unbiased variance, ``momentum``); eval normalises step ``t`` with step ``t``'s running statistics, a
per-step affine map (as BNTT's). The authors' layer (``HaiyanJiang/SNN-TAB``, ``TAB_Layer``)
re-normalises the whole prefix at every step, about ``T(T+1)/2`` slices a layer. Here each step's
moments are taken once and merged into the prefix's with Chan et al.'s pairwise update
(:func:`~bntt_snntorch.definition.merged_mean`, :func:`~bntt_snntorch.definition.merged_squares`): one pass
over T, and the backward runs through the prefix statistics by autograd, also in one pass. In a block before a
leaky neuron (:class:`~bntt_snntorch.layers.SpikingBlock`) the plan runs it fused on the block's backend
(:mod:`bntt_snntorch.kernels.fused_tab`), this module being the reference it is tested against.

Step mode (:mod:`bntt_snntorch.step_mode`): "m" (default) — ``tab(x_seq)`` runs a sequence ``(T', B, C, ...)``;
"s" — ``tab(x, t)`` (or ``tab(x)`` with the step counter) runs one step ``(B, C, ...)``, keeping the
prefix's count, mean and sum of squares per channel (``O(C)`` state, with their autograd history) and
not the prefix itself. Both modes compute the same values.
"""

from __future__ import annotations

import torch
from torch import nn

from . import definition as D
from .step_mode import StepCounter


class _PrefixMoments:
    """The prefix ``0..t-1``'s count, mean ``(C,)`` and summed squared deviations ``(C,)``, in double."""

    def __init__(self):
        self.count, self.mean, self.squares = 0, None, None

    def add(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Merge one step ``x`` ``(B, C, ...)``; returns the prefix's ``(mean, biased variance, count)``
        including it, mean and variance in ``x``'s dtype."""
        dims = [0, *range(2, x.dim())]
        count = x.numel() // x.shape[1]
        step_mean = D.wide(x).mean(dims)
        step_squares = D.squared_deviation(D.wide(x), step_mean.view(1, -1, *[1] * (x.dim() - 2))).sum(dims)
        if self.count == 0:
            self.mean, self.squares = step_mean, step_squares
        else:
            mean = D.merged_mean(self.mean, self.count, step_mean, count)
            self.squares = D.merged_squares(self.squares, self.mean, self.count, step_squares, step_mean, count)
            self.mean = mean
        self.count += count
        return self.mean.to(x.dtype), (self.squares / self.count).to(x.dtype), self.count


class _TemporalAccumulatedBatchNorm(StepCounter, nn.Module):
    _step_ranks: tuple[int, ...]
    _step_shape: str
    default_step_mode = "m"

    def __init__(
        self,
        num_features: int,
        time_steps: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        step_mode: str | None = None,
    ):
        super().__init__()
        if not isinstance(time_steps, int) or time_steps < 1:
            raise ValueError(f"time_steps must be a positive int, got {time_steps!r}")
        self.num_features, self.time_steps, self.eps, self.momentum = num_features, time_steps, eps, momentum
        self.weight = nn.Parameter(torch.ones(time_steps, num_features))
        self.bias = nn.Parameter(torch.zeros(time_steps, num_features))
        self.p = nn.Parameter(torch.ones(time_steps))
        self.register_buffer("running_mean", torch.zeros(time_steps, num_features))
        self.register_buffer("running_var", torch.ones(time_steps, num_features))
        self.register_buffer("num_batches_tracked", torch.zeros(time_steps, dtype=torch.long))
        if step_mode is not None:
            self.step_mode = step_mode
        self.reset_state()

    @property
    def gammas(self) -> torch.Tensor:
        """The per-step gains ``p_t^2 * weight_t`` ``(time_steps, num_features)`` (a detached copy)."""
        return (self.p.detach()[:, None] ** 2 * self.weight.detach()).clone()

    def reset_state(self) -> None:
        super().reset_state()
        self.__dict__["_prefix"] = _PrefixMoments()

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_prefix", None)  # a sequence's moments (with their autograd history) are not saved
        return state

    def _kept_prefix(self) -> _PrefixMoments:
        return self.__dict__.setdefault("_prefix", _PrefixMoments())

    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Step mode "m": ``x_seq`` ``(T', B, C, ...)`` -> same shape; "s": one step ``(B, C, ...)``, step ``t``
        or the counter's."""
        return self.step(x, t) if self.step_mode == "s" else self.multi_step(x)

    def multi_step(self, x_seq: torch.Tensor, first_step: int = 0) -> torch.Tensor:
        """``x_seq`` ``(T', B, C, ...)`` (steps ``first_step ..``; a sequence starts at 0) -> the same shape."""
        if x_seq.dim() - 1 not in self._step_ranks or x_seq.shape[2] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): expected a sequence (T, {self._step_shape[1:]} with "
                f"C={self.num_features}, got shape {tuple(x_seq.shape)}"
            )
        if first_step + x_seq.shape[0] > self.time_steps:
            raise ValueError(
                f"{type(self).__name__}: sequence has {x_seq.shape[0]} steps from step {first_step} but the layer "
                f"was built for time_steps={self.time_steps} (got shape {tuple(x_seq.shape)})"
            )
        prefix = _PrefixMoments() if first_step == 0 else self._kept_prefix()
        out = torch.stack([self._normalise(x, first_step + k, prefix) for k, x in enumerate(x_seq)])
        self.__dict__["_prefix"] = prefix
        return out

    def step(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Step ``t`` (or the counter's) of ``x`` ``(B, C, ...)``: merged into the prefix kept since step 0."""
        if x.dim() not in self._step_ranks or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): expected one step {self._step_shape} with "
                f"C={self.num_features}, got shape {tuple(x.shape)}"
            )
        counter = t is None
        t = self._next_step(x) if counter else t
        if not 0 <= t < self.time_steps:
            raise IndexError(f"{type(self).__name__}: step t must be in [0, {self.time_steps - 1}], got {t}")
        if t == 0:
            self.__dict__["_prefix"] = _PrefixMoments()
        y = self._normalise(x, t, self._kept_prefix())
        if counter:
            self._advance(x)
        return y

    def _normalise(self, x: torch.Tensor, t: int, prefix: _PrefixMoments) -> torch.Tensor:
        """Step ``t`` of ``x`` ``(B, C, ...)``: training merges it into ``prefix`` and uses the prefix's
        statistics (and updates step ``t``'s running ones); eval uses step ``t``'s running statistics."""
        if self.training:
            mean, var, count = prefix.add(x)
            self.record_statistics(t, mean, var, count)
        else:
            mean, var = self.running_mean[t], self.running_var[t]
        rstd = D.inverse_std(var, self.eps)
        gain = self.p[t] * self.p[t]
        k, shift = D.coefficients(mean, rstd, self.weight[t], 1.0)
        shape = (1, -1, *[1] * (x.dim() - 2))
        return gain * (D.normalise(x, k.view(shape), shift.view(shape)) + self.bias[t].view(shape))

    @torch.no_grad()
    def record_statistics(self, t: int, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """Move step ``t``'s running statistics toward the prefix's ``mean`` and biased ``var`` ``(C,)`` over
        ``count`` values (made unbiased), as ``BatchNorm3d`` over the prefix moves them."""
        unbiased = D.unbiased_variance(var, D.unbiased_factor(count))
        self.running_mean[t] = D.running_update(self.running_mean[t], mean, self.momentum)
        self.running_var[t] = D.running_update(self.running_var[t], unbiased, self.momentum)
        self.num_batches_tracked[t] += 1

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, time_steps={self.time_steps}, eps={self.eps}, momentum={self.momentum}, "
            f"step_mode={self.step_mode!r}"
        )


class TemporalAccumulatedBatchNorm1d(_TemporalAccumulatedBatchNorm):
    """TAB over ``(T, B, C)`` / ``(T, B, C, L)`` sequences (one step: ``(B, C)`` / ``(B, C, L)``)."""

    _step_ranks = (2, 3)
    _step_shape = "(B, C) or (B, C, L)"


class TemporalAccumulatedBatchNorm2d(_TemporalAccumulatedBatchNorm):
    """TAB over ``(T, B, C, H, W)`` sequences (one step: ``(B, C, H, W)``)."""

    _step_ranks = (4,)
    _step_shape = "(B, C, H, W)"
