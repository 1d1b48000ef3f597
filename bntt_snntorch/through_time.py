"""``ThroughTime``: independent copies of a layer, one per time step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._compat import deprecated
from .step_mode import StepCounter


class ThroughTime(StepCounter, nn.ModuleList):
    """One independent copy of a layer per time step (parameters and buffers).

    ``ThroughTime(lambda: nn.BatchNorm2d(64), T)`` is BNTT with a trainable
    bias; ``ThroughTime(lambda: nn.LayerNorm(128), T)`` a per-step LayerNorm.
    ``len(tt) == time_steps`` and ``tt[t]`` is the layer of step ``t``.

    ``step_mode`` (see :mod:`bntt_snntorch.step_mode`) says what ``forward`` takes:

    * ``"s"`` (default): one step ``(B, ...)``; ``tt(x, t)`` uses layer ``t``,
      ``tt(x)`` the step counter (it starts at 0, advances after each such call
      and wraps after ``time_steps`` calls; ``tt.reset()`` or
      :func:`bntt_snntorch.utils.reset` sets it to 0; a call that raises does not
      advance it; it is not saved).
    * ``"m"``: a sequence ``(T', B, ...)`` with ``T' <= time_steps``; step ``t``
      of the sequence uses layer ``t``.

    ``tt.step(x, t=None)`` and ``tt.multi_step(x_seq)`` run one step / a sequence
    whatever the mode; neither form touches the counter unless ``t`` is None.

    ``step_ndim`` (the rank of one step: 2 for ``(B, F)``, 4 for ``(B, C, H, W)``;
    inferred for batch norms, else 2) is kept only to recognise the old call
    ``tt(x_seq)`` in step mode "s", which still runs the sequence until it goes
    away (:mod:`bntt_snntorch._compat`).
    """

    def __init__(
        self,
        factory: Callable[[], nn.Module],
        time_steps: int,
        step_ndim: int | None = None,
        *,
        step_mode: str | None = None,
    ):
        if not isinstance(time_steps, int) or time_steps < 1:
            raise ValueError(f"time_steps must be a positive int, got {time_steps!r}")
        super().__init__([factory() for _ in range(time_steps)])
        self.time_steps = time_steps
        self.step_ndim = _infer_step_ndim(self[0]) if step_ndim is None else step_ndim
        if step_mode is not None:
            self.step_mode = step_mode

    # -- container behaviour -------------------------------------------------
    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return nn.ModuleList(list(self._modules.values())[idx])
        return super().__getitem__(idx)

    def _layers(self, first_step: int = 0, steps: int | None = None) -> tuple[nn.Module, ...]:
        """The layers of steps ``first_step ..`` (``steps`` of them; None: to the end) as a tuple: what the
        sequence paths iterate (cheaper than the slice, which builds a ModuleList)."""
        layers = tuple(self._modules.values())
        return layers[first_step:] if steps is None else layers[first_step : first_step + steps]

    # -- forward -------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Step mode "s": one step (``t`` or the counter); "m": the sequence ``x`` (no ``t``)."""
        if self.step_mode == "m":
            if t is not None:
                raise TypeError(
                    f"{type(self).__name__}(step_mode='m') takes a whole sequence (T, B, ...) and no t; "
                    "for one step call .step(x, t) or set step_mode='s'"
                )
            return self.multi_step(x)
        if t is None and self._legacy_sequence(x):
            deprecated("a sequence (T, B, ...) given to a ThroughTime layer in step_mode='s'", stacklevel=3)
            return self.multi_step(x)
        return self.step(x, t)

    def step(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """One step ``x`` ``(B, ...)`` through layer ``t``, or with ``t=None`` the counter's layer."""
        if t is not None:
            self._check_step_index(t)
            self._check_step_input(x)
            return self._step_at(t, x)
        self._check_step_input(x, counter=True)
        out = self._step_at(self._next_step(x), x)
        self._advance(x)
        return out

    def _step_at(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``t`` on ``x`` (checked): what a subclass changes to run a step another way."""
        return self[t](x)

    def multi_step(self, x_seq: torch.Tensor, first_step: int = 0) -> torch.Tensor:
        """The sequence ``x_seq`` ``(T', B, ...)`` as steps ``first_step .. first_step + T' - 1`` (at most
        ``time_steps``) -> the same shape."""
        self._check_sequence_input(x_seq, first_step)
        return self._forward_sequence(x_seq, first_step)

    def _forward_sequence(self, x_seq: torch.Tensor, first_step: int = 0) -> torch.Tensor:
        return torch.stack([layer(x) for layer, x in zip(self._layers(first_step), x_seq)])

    # -- validation ----------------------------------------------------------
    def _legacy_sequence(self, x: torch.Tensor) -> bool:
        return x.dim() == self.step_ndim + 1

    def _check_step_index(self, t) -> None:
        if not isinstance(t, int) or not 0 <= t < self.time_steps:
            raise IndexError(f"{type(self).__name__}: step t must be an int in [0, {self.time_steps - 1}], got {t!r}")

    def _check_step_input(self, x: torch.Tensor, counter: bool = False) -> None:
        """Layer-specific checks of one step's shape (none here: the wrapped layer checks)."""

    def _check_sequence_input(self, x_seq: torch.Tensor, first_step: int = 0) -> None:
        if x_seq.dim() < 2:
            raise ValueError(
                f"{type(self).__name__}(step_mode='m') expects a sequence (T, B, ...), got shape {tuple(x_seq.shape)}"
            )
        if first_step + x_seq.shape[0] > self.time_steps:
            after = f" after step {first_step}" if first_step else ""
            raise ValueError(
                f"{type(self).__name__}: sequence has {x_seq.shape[0]} steps{after} but the layer was built for "
                f"time_steps={self.time_steps} (expected T' <= {self.time_steps - first_step}, got shape "
                f"{tuple(x_seq.shape)})"
            )

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}, step_mode={self.step_mode!r}"


def _infer_step_ndim(layer: nn.Module) -> int:
    for cls, ndim in ((nn.BatchNorm1d, 2), (nn.BatchNorm2d, 4), (nn.BatchNorm3d, 5)):
        if isinstance(layer, cls):
            return ndim
    return 2
