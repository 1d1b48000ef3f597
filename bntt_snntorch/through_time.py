"""``ThroughTime``: independent copies of a layer, one per time step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ThroughTime(nn.ModuleList):
    """One independent copy of a layer per time step (parameters and buffers).

    ``ThroughTime(lambda: nn.BatchNorm2d(64), T)`` is BNTT with a trainable
    bias; ``ThroughTime(lambda: nn.LayerNorm(128), T)`` a per-step LayerNorm.
    ``len(tt) == time_steps`` and ``tt[t]`` is the layer of step ``t``.

    Three ways to call it:

    * ``tt(x, t)`` — explicit step ``t``; ``x`` is one step ``(B, ...)``.
    * ``tt(x_seq)`` — multi-step; ``x_seq`` is ``(T', B, ...)`` with
      ``T' <= time_steps``; step ``t`` of the sequence uses layer ``t``.
    * ``tt(x)`` — one step ``(B, ...)`` with no ``t``: an internal counter
      picks the layer. It starts at 0, advances by one after each such call
      and wraps to 0 after ``time_steps`` calls, so a loop of exactly
      ``time_steps`` steps needs no reset; ``tt.reset()`` (or
      :func:`bntt_snntorch.utils.reset` on the whole net) sets it to 0.
      The explicit and multi-step forms never touch the counter, a call that
      raises does not advance it, and it is not saved (not in the state dict,
      zero after pickling).

    Whether ``x`` is one step or a sequence is told by its rank:
    ``step_ndim`` (the rank of one step, e.g. 2 for ``(B, F)``, 4 for
    ``(B, C, H, W)``) or ``step_ndim + 1``. It is inferred for batch norms
    and defaults to 2 otherwise.
    """

    def __init__(self, factory: Callable[[], nn.Module], time_steps: int, step_ndim: int | None = None):
        if not isinstance(time_steps, int) or time_steps < 1:
            raise ValueError(f"time_steps must be a positive int, got {time_steps!r}")
        super().__init__([factory() for _ in range(time_steps)])
        self.time_steps = time_steps
        self.step_ndim = _infer_step_ndim(self[0]) if step_ndim is None else step_ndim
        self._counter = 0

    # -- container behaviour -------------------------------------------------
    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return nn.ModuleList(list(self._modules.values())[idx])
        return super().__getitem__(idx)

    def __getstate__(self):
        state = super().__getstate__()
        state["_counter"] = 0
        return state

    # -- counter -------------------------------------------------------------
    @property
    def current_step(self) -> int:
        """The step the next counter-driven call will use."""
        return self._counter

    def reset(self) -> None:
        """Set the step counter back to 0."""
        self._counter = 0

    # -- forward -------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """See the class docstring for the three call forms and their shapes."""
        if t is not None:
            self._check_step_index(t)
            self._check_step_input(x)
            return self[t](x)
        if self._is_sequence(x):
            self._check_sequence_input(x)
            return self._forward_sequence(x)
        self._check_step_input(x, counter=True)
        out = self[self._counter](x)
        self._counter = (self._counter + 1) % self.time_steps
        return out

    def _forward_sequence(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.stack([layer(x) for layer, x in zip(self, x_seq)])

    # -- validation ----------------------------------------------------------
    def _is_sequence(self, x: torch.Tensor) -> bool:
        return x.dim() == self.step_ndim + 1

    def _check_step_index(self, t) -> None:
        if not isinstance(t, int) or not 0 <= t < self.time_steps:
            raise IndexError(f"{type(self).__name__}: step t must be an int in [0, {self.time_steps - 1}], got {t!r}")

    def _check_step_input(self, x: torch.Tensor, counter: bool = False) -> None:
        if counter and x.dim() != self.step_ndim:
            raise ValueError(
                f"{type(self).__name__}: expected one step of rank {self.step_ndim} or a sequence of rank "
                f"{self.step_ndim + 1} (T, B, ...), got shape {tuple(x.shape)}"
            )

    def _check_sequence_input(self, x_seq: torch.Tensor) -> None:
        if x_seq.shape[0] > self.time_steps:
            raise ValueError(
                f"{type(self).__name__}: sequence has {x_seq.shape[0]} steps but the layer was built for "
                f"time_steps={self.time_steps} (expected T' <= {self.time_steps}, got shape {tuple(x_seq.shape)})"
            )

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}"


def _infer_step_ndim(layer: nn.Module) -> int:
    for cls, ndim in ((nn.BatchNorm1d, 2), (nn.BatchNorm2d, 4), (nn.BatchNorm3d, 5)):
        if isinstance(layer, cls):
            return ndim
    return 2
