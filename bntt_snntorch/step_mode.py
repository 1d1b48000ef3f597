"""One protocol for time: every layer says whether a call is one step or a whole sequence.

A :class:`StepModule` has a ``step_mode`` attribute, set at construction and for a whole
network by :func:`set_step_mode` (SpikingJelly's convention):

* ``"s"`` — ``forward`` takes one step ``(B, ...)``; stateful layers keep their state
  (membrane, step counter) between calls until :func:`bntt_snntorch.utils.reset`.
* ``"m"`` — ``forward`` takes a time-major sequence ``(T, B, ...)``.

Nothing reads the mode from a tensor's rank. Every step module also has explicit entry points
that ignore the attribute (``step`` / ``multi_step``), which is what composite layers call.
"""

from __future__ import annotations

from torch import nn

STEP_MODES = ("s", "m")


def check_step_mode(mode: str) -> str:
    """``mode`` if it is "s" or "m"; else a one-line ValueError."""
    if mode not in STEP_MODES:
        raise ValueError(f"step_mode must be 's' (single step) or 'm' (multi-step), got {mode!r}")
    return mode


class StepModule:
    """Mixin for an ``nn.Module`` with an explicit ``step_mode`` ("s" or "m").

    Subclasses set ``default_step_mode``; ``reset()`` clears whatever state the layer keeps
    between single-step calls (nothing by default).
    """

    default_step_mode = "s"

    @property
    def step_mode(self) -> str:
        """ "s": ``forward`` runs one step ``(B, ...)``; "m": a whole ``(T, B, ...)`` sequence."""
        return self.__dict__.get("_step_mode", self.default_step_mode)

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        self.__dict__["_step_mode"] = check_step_mode(mode)

    def reset(self) -> None:
        """Forget the state kept between single-step calls (none here)."""


class StepContainer(StepModule):
    """A :class:`StepModule` made of step modules (a network): setting its ``step_mode`` sets the mode of
    every step module inside it too, as :func:`set_step_mode` does."""

    @property
    def step_mode(self) -> str:
        """ "m" or "s"; setting it sets every step module inside (as :func:`set_step_mode`)."""
        return StepModule.step_mode.fget(self)

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        StepModule.step_mode.fset(self, mode)
        for module in self.modules():
            if isinstance(module, StepModule) and module is not self:
                module.step_mode = mode


class StepCounter(StepModule):
    """A :class:`StepModule` whose single-step calls without an explicit ``t`` use a counter.

    The counter starts at 0, advances by one after each such call and wraps to 0 after
    ``time_steps`` calls (so a loop of exactly ``time_steps`` steps needs no reset);
    ``reset()`` sets it to 0. It is not saved (not in the state dict, zero after pickling).
    """

    time_steps: int | None

    @property
    def current_step(self) -> int:
        """The step the next counter-driven call will use."""
        return self.__dict__.get("_counter", 0)

    def reset(self) -> None:
        self.__dict__["_counter"] = 0

    def _advance(self) -> None:
        nxt = self.current_step + 1
        self.__dict__["_counter"] = nxt % self.time_steps if self.time_steps else nxt

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_counter", None)
        return state


def set_step_mode(net: nn.Module, mode: str) -> nn.Module:
    """Set ``step_mode`` of every :class:`StepModule` in ``net`` (``net`` included); returns ``net``.

    snnTorch's own neurons (always single-step) are left as they are.
    """
    check_step_mode(mode)
    for module in net.modules():
        if isinstance(module, StepModule):
            module.step_mode = mode
    return net
