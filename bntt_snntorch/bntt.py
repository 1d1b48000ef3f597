"""Batch Normalization Through Time (Kim & Panda 2020).

One BatchNorm per time step, each with its own running statistics and gamma,
bias fixed at 0. Drop-in for ``snn.BatchNormTT1d/2d`` (same arguments and
defaults, ``len``, indexing and state-dict keys), with a fast multi-step path
(``step_mode="m"`` or ``bn.multi_step(x_seq)``): BNTT over ``(T, B, C, H, W)`` equals
one BatchNorm over the ``T*C`` channels of ``(B, T*C, H, W)``, so all steps are
normalised in a single call.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import definition
from .synced_norm import synced_batch_norm
from .through_time import ThroughTime

SEED_EPS = 1e-4  # the BNTT paper's code; snnTorch, SpikingJelly and torch use 1e-5
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


class BatchNormTT(ThroughTime):
    """The shared base of :class:`BatchNormTT1d` and :class:`BatchNormTT2d` (use it in ``isinstance``).

    ``BatchNormTT2d(num_features, time_steps, eps=1e-5, momentum=0.1, affine=True)``: snnTorch's
    signature and defaults; its keyword ``input_features`` is accepted for ``num_features``, and
    the keyword ``step_mode`` ("s", the default: one step a call, as snnTorch's per-step
    ``bn[t](x)``; "m": a whole sequence a call) is ours.
    """

    _norm: type[nn.modules.batchnorm._BatchNorm]
    _step_ranks: tuple[int, ...]
    _step_shape: str

    def __init__(
        self,
        num_features: int | None = None,
        time_steps: int | None = None,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        *,
        input_features: int | None = None,
        step_mode: str | None = None,
    ):
        name = type(self).__name__
        if (num_features is None) == (input_features is None):
            raise TypeError(f"{name}() takes the channel count once: num_features (or snnTorch's input_features)")
        num_features = num_features if input_features is None else input_features
        if time_steps is None:
            raise TypeError(f"{name}() missing required argument: 'time_steps'")
        norm = self._norm
        super().__init__(
            lambda: norm(num_features, eps=eps, momentum=momentum, affine=affine),
            time_steps,
            self._step_ranks[0],
            step_mode=step_mode,
        )
        for bn in self:
            bn.bias = None
        self.num_features = num_features
        self.affine = affine
        self.synchronized = False  # set by bntt_snntorch.training.distributed.sync_batchnorm_tt
        self._register_load_state_dict_pre_hook(_rename_spikingjelly_keys)
        self.register_load_state_dict_post_hook(_pack_after_load)
        self._pack_statistics()

    # -- running statistics as (T, C) tables ----------------------------------------------
    def _pack_statistics(self) -> None:
        """Make each running statistic of the steps one table, ``(T, C)`` (``num_batches_tracked``: ``(T,)``),
        whose rows are the steps' own buffers: a sequence's update is then one op, not T, and each step's
        batch norm keeps its buffers, state-dict keys and per-step behaviour. Done at construction and
        again after ``.to()`` / ``load_state_dict`` (which may replace buffers); a statistic whose buffers
        were replaced since is updated step by step until then (:meth:`_tables`)."""
        steps = self._layers()
        tables = {}
        for name in _STATISTICS:
            buffers = [bn._buffers.get(name) for bn in steps]
            if any(b is None for b in buffers):  # track_running_stats=False
                continue
            if self._table(name) is not None:
                tables[name] = self.__dict__["_statistics"][name]
                continue
            table = torch.stack(buffers)
            rows = tuple(table)
            for bn, row in zip(steps, rows):
                bn._buffers[name] = row
            tables[name] = (table.data, rows)  # .data: written without a version bump
        self.__dict__["_statistics"] = tables

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._pack_statistics()
        return self

    def _tables(self, first_step: int, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(running_mean (T', C), running_var (T', C), num_batches_tracked (T',))`` of steps ``first_step ..``
        as slices of the packed tables (through ``.data``: written without a version bump, as batch norm's
        own kernel writes), or None where a step's buffer is no longer its table's row."""
        tables = [self._table(name) for name in _STATISTICS]
        if any(table is None for table in tables):
            return None
        whole = first_step == 0 and steps == self.time_steps
        return tuple(table if whole else table[first_step : first_step + steps] for table in tables)

    def _table(self, name: str) -> torch.Tensor | None:
        """The packed table of statistic ``name`` (its ``.data``), or None where it is not packed or a step's
        buffer is no longer its row."""
        table, rows = self.__dict__.get("_statistics", {}).get(name, (None, ()))
        if table is None or not all(bn._buffers.get(name) is row for bn, row in zip(self._layers(), rows)):
            return None
        return table

    @property
    def gammas(self) -> torch.Tensor:
        """Per-step gammas, ``(time_steps, num_features)`` (a detached copy)."""
        return torch.stack([bn.weight.detach() for bn in self])

    def _legacy_sequence(self, x: torch.Tensor) -> bool:
        return x.dim() in tuple(r + 1 for r in self._step_ranks)

    def _check_step_input(self, x: torch.Tensor, counter: bool = False) -> None:
        ranks = self._step_ranks[:1] if counter else self._step_ranks
        if x.dim() not in ranks or x.shape[1] != self.num_features:
            seq = " or ".join(f"(T, {s[1:]}" for s in self._step_shape.split(" or "))
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): expected one step {self._step_shape} with "
                f"C={self.num_features} (a sequence {seq} needs step_mode='m'), got shape {tuple(x.shape)}"
            )

    def _check_sequence_input(self, x_seq: torch.Tensor, first_step: int = 0) -> None:
        super()._check_sequence_input(x_seq, first_step)
        if x_seq.shape[2] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): expected channels C={self.num_features} at dim 2 of "
                f"(T, B, C, ...), got shape {tuple(x_seq.shape)}"
            )

    def _synchronizing(self) -> bool:
        return self.training and self.synchronized and dist.is_initialized() and dist.get_world_size() > 1

    def _step_at(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """Step ``t``'s batch norm on ``x`` ``(B, C, ...)``. Under torchrun with
        :func:`~bntt_snntorch.training.distributed.sync_batchnorm_tt` the training statistics of the step
        are taken over all ranks, as in the multi-step path (online training runs per step)."""
        if not self._synchronizing():
            return super()._step_at(t, x)
        bn = self[t]
        out, mean, var, count = synced_batch_norm(x, bn.weight, bn.eps)
        self._update_running_statistics(t, mean[None], var[None], count)
        return out

    def _forward_sequence(self, x_seq: torch.Tensor, first_step: int = 0) -> torch.Tensor:
        steps = self._layers(first_step, x_seq.shape[0])
        first = steps[0]
        if first.momentum is None:  # cumulative averaging: per-step counters may differ
            return super()._forward_sequence(x_seq, first_step)
        T, B, C = x_seq.shape[:3]
        rest = x_seq.shape[3:]
        flat = x_seq.transpose(0, 1).reshape(B, T * C, *rest)
        weight = torch.cat([bn.weight for bn in steps]) if self.affine else None
        if self._synchronizing():
            out, mean, var, count = synced_batch_norm(flat, weight, first.eps)
            self._update_running_statistics(first_step, mean.view(T, C), var.view(T, C), count)
            return out.view(B, T, C, *rest).transpose(0, 1)
        tables = self._tables(first_step, T)
        if tables is None:  # a replaced buffer: the steps' statistics gathered and written back
            running_mean = torch.cat([bn.running_mean for bn in steps])
            running_var = torch.cat([bn.running_var for bn in steps])
        elif self.training:  # the tables' rows, updated in place by batch norm's kernel
            running_mean, running_var = tables[0].view(-1), tables[1].view(-1)
        else:  # copies, as the concatenation was: eval's backward reads them, a later update must not move them
            running_mean, running_var = tables[0].flatten().clone(), tables[1].flatten().clone()
        out = F.batch_norm(flat, running_mean, running_var, weight, None, self.training, first.momentum, first.eps)
        if self.training:
            # Written through .data, as batch norm's own kernel updates running statistics: without
            # a version bump, so a per-step call earlier in the same graph (which saved these
            # buffers) still runs backward.
            with torch.no_grad():
                if tables is None:
                    torch._foreach_copy_([bn.running_mean.data for bn in steps], list(running_mean.view(T, C)))
                    torch._foreach_copy_([bn.running_var.data for bn in steps], list(running_var.view(T, C)))
                    torch._foreach_add_([bn.num_batches_tracked for bn in steps], 1)
                else:
                    tables[2].add_(1)
        return out.view(B, T, C, *rest).transpose(0, 1)

    # -- fused path (used by SpikingBlock with a leaky neuron) --------------------------
    def fusable(self) -> bool:
        """Whether a fused kernel can run it (:mod:`bntt_snntorch.kernels.fused_block`): exponential running
        averages, no cross-rank sync."""
        return self[0].momentum is not None and not self._synchronizing()

    def running_statistics(self, first_step: int, steps: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(running_mean, running_var)`` of steps ``first_step ..`` (``(steps, C)`` copies in ``dtype``): what eval
        normalises with (copies: a later training call must not move what an eval graph saved)."""
        tables = self._tables(first_step, steps)
        if tables is None:
            layers = self._layers(first_step, steps)
            return tuple(torch.stack([getattr(bn, n) for bn in layers]).to(dtype) for n in _STATISTICS[:2])
        return tables[0].to(dtype, copy=True), tables[1].to(dtype, copy=True)

    def step_weights(self, x_seq: torch.Tensor, first_step: int = 0) -> torch.Tensor | None:
        """The gammas that normalise ``x_seq`` ``(T', B, C, ...)`` as steps ``first_step ..``: one ``(T', C)``
        stack (gradients reach each step's weight), None for ``affine=False``; ``x_seq``'s shape checked."""
        gammas = self.step_gammas(x_seq, first_step)
        return torch.stack(gammas) if gammas else None

    def step_gammas(self, x_seq: torch.Tensor, first_step: int = 0) -> tuple[torch.Tensor, ...]:
        """Each step's gamma (its batch norm's ``weight`` ``(C,)``) for normalising ``x_seq`` ``(T', B, C, ...)`` as
        steps ``first_step ..``; ``()`` for ``affine=False``; ``x_seq``'s shape checked."""
        self._check_sequence_input(x_seq, first_step)
        return tuple(bn.weight for bn in self._layers(first_step, x_seq.shape[0])) if self.affine else ()

    def record_statistics(self, x_seq: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, first_step: int = 0):
        """The running statistics of steps ``first_step ..`` updated with the batch mean and biased variance
        ``(T', C)`` of ``x_seq`` ``(T', B, C, ...)`` (computed by a fused kernel)."""
        self._update_running_statistics(first_step, mean, var, self._values_per_channel(x_seq))

    def packed_running_statistics(self, x_seq: torch.Tensor, first_step: int = 0):
        """``(running_mean (T', C), running_var (T', C), num_batches_tracked (T',), momentum, values a channel)`` of
        steps ``first_step ..``, for a fused kernel that updates the running statistics in its own pass over
        ``x_seq`` ``(T', B, C, ...)`` as :meth:`record_statistics` would (the packed float32 tables, written in
        place); None where they are not such tables (a replaced buffer, another dtype): then
        :meth:`record_statistics` after the kernel."""
        tables = self._tables(first_step, x_seq.shape[0])
        if tables is None or (tables[0].dtype, tables[1].dtype) != (torch.float32, torch.float32):
            return None
        return (*tables, self[first_step].momentum, self._values_per_channel(x_seq))

    def _values_per_channel(self, x_seq: torch.Tensor) -> int:
        """Values a channel of one step of ``x_seq`` ``(T', B, C, ...)`` (more than 1 to train)."""
        count = math.prod(x_seq.shape[1:]) // x_seq.shape[2]
        if count == 1:
            raise ValueError(
                f"{type(self).__name__}: expected more than 1 value per channel when training, got shape "
                f"{tuple(x_seq.shape)}"
            )
        return count

    @torch.no_grad()
    def _update_running_statistics(self, first_step: int, mean: torch.Tensor, var: torch.Tensor, count) -> None:
        """Batch norm's running-statistics rule for steps ``first_step ..`` (one per row of ``mean`` / ``var``
        ``(T', C)``, the batch's mean and biased variance over ``count`` values a channel): the definition's
        :func:`~bntt_snntorch.definition.running_update` with the unbiased variance, and ``num_batches_tracked``
        + 1; one op each on the packed tables. Used wherever the statistics do not come from batch norm's own
        kernel (a fused kernel's, the cross-rank ones). Written through ``.data`` (no version bump)."""
        T = mean.shape[0]
        momentum = self[first_step].momentum
        unbiased = definition.unbiased_variance(var, definition.unbiased_factor(count))
        tables = self._tables(first_step, T)
        if tables is not None:
            running_mean, running_var, counters = tables
            pairs, counters = ((running_mean, mean), (running_var, unbiased)), [counters]
        else:  # a replaced buffer: step by step
            steps = self._layers(first_step, T)
            pairs = [(bn.running_mean.data, m) for bn, m in zip(steps, mean)]
            pairs += [(bn.running_var.data, v) for bn, v in zip(steps, unbiased)]
            counters = [bn.num_batches_tracked for bn in steps]
        for running, batch in pairs:
            running.copy_(definition.running_update(running, batch.to(running.dtype), momentum))
        torch._foreach_add_(counters, 1)

    def extra_repr(self) -> str:
        first = self[0]
        return (
            f"{self.num_features}, time_steps={self.time_steps}, eps={first.eps}, momentum={first.momentum}, "
            f"affine={self.affine}, step_mode={self.step_mode!r}"
        )


class BatchNormTT1d(BatchNormTT):
    """BNTT for ``(B, C)`` / ``(B, C, L)`` steps; sequences ``(T, B, C)`` / ``(T, B, C, L)``.

    Step mode "s": ``bn(x, t)`` runs step ``t``, ``bn(x)`` the step counter's (see
    :class:`~bntt_snntorch.ThroughTime`). Step mode "m": ``bn(x_seq)`` runs all steps
    in one batch-norm call.
    """

    _norm = nn.BatchNorm1d
    _step_ranks = (2, 3)
    _step_shape = "(B, C) or (B, C, L)"


class BatchNormTT2d(BatchNormTT):
    """BNTT for ``(B, C, H, W)`` steps; sequences ``(T, B, C, H, W)``.

    Step mode "s": ``bn(x, t)`` runs step ``t``, ``bn(x)`` the step counter's (see
    :class:`~bntt_snntorch.ThroughTime`). Step mode "m": ``bn(x_seq)`` runs all steps
    in one batch-norm call (equal to the per-step loop in outputs, gradients and
    running statistics).
    """

    _norm = nn.BatchNorm2d
    _step_ranks = (4,)
    _step_shape = "(B, C, H, W)"


def _pack_after_load(module: BatchNormTT, incompatible_keys) -> None:
    """``load_state_dict(assign=True)`` replaces buffers: the tables are packed again."""
    module._pack_statistics()


def _rename_spikingjelly_keys(state_dict, prefix, *args) -> None:
    """Accept SpikingJelly's ``BatchNormThroughTime*d`` layout (``bn_list.<t>.*``)."""
    old = prefix + "bn_list."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + key[len(old) :]] = state_dict.pop(key)
