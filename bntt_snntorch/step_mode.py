"""One protocol for time: every layer says whether a call is one step or a whole sequence.

A :class:`StepModule` has a ``step_mode`` attribute, set at construction and for a whole
network by :func:`set_step_mode` (SpikingJelly's convention):

* ``"s"`` — ``forward`` takes one step ``(B, ...)``; stateful layers keep their state
  (membrane, step counter) between calls until :func:`bntt_snntorch.utils.reset` (which calls
  every step module's :meth:`StepModule.reset_state`).
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

    Subclasses set ``default_step_mode``; :meth:`reset_state` clears whatever state the layer keeps
    between single-step calls (nothing by default). The name is ``reset_state``, not ``reset``,
    because snnTorch's neurons write a tensor to ``self.reset`` at every step: on our
    :class:`~bntt_snntorch.Leaky` (an ``snn.Leaky``) ``reset`` is snnTorch's attribute. The other step
    modules (BNTT, blocks, networks) also answer to ``reset()``, SpikingJelly's spelling.
    """

    default_step_mode = "s"

    @property
    def step_mode(self) -> str:
        """ "s": ``forward`` runs one step ``(B, ...)``; "m": a whole ``(T, B, ...)`` sequence."""
        return self.__dict__.get("_step_mode", self.default_step_mode)

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        self.__dict__["_step_mode"] = check_step_mode(mode)

    def reset_state(self) -> None:
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

    def reset(self) -> None:
        """Forget the single-step state of the network (:meth:`reset_state`)."""
        self.reset_state()


#: How many times a neuron's hidden state was set from outside a step in this process (see
#: :func:`note_neuron_reset`).
_neuron_resets = 0


def note_neuron_reset() -> None:
    """Signal that a neuron's hidden state was reset from outside a step: ``snntorch.utils.reset``
    (``snn.Leaky.reset_hidden``), ``lif.reset_mem()`` / ``lif.init_leaky()`` on our
    :class:`~bntt_snntorch.Leaky`. Every counter-driven step module (BNTT, ThroughTime, blocks and
    networks in step mode "s") then starts its next counter-driven call at step 0 with fresh state:
    a new sequence began. Like snnTorch's own reset helper (which resets every neuron of the
    process), the signal is process-wide."""
    global _neuron_resets
    _neuron_resets += 1


class StepCounter(StepModule):
    """A :class:`StepModule` whose single-step calls without an explicit ``t`` use a counter.

    The counter starts at 0, advances by one after each such call and wraps to 0 after
    ``time_steps`` calls (so a loop of exactly ``time_steps`` steps needs no reset). It goes back
    to 0 on ``reset()`` / :meth:`reset_state` (what :func:`bntt_snntorch.utils.reset` calls), and
    when one of our neurons is reset from outside a step (:func:`note_neuron_reset`: e.g.
    ``snntorch.utils.reset`` on a net with :class:`~bntt_snntorch.Leaky` neurons). A counter-driven
    call whose batch size differs from the previous step's in the middle of a sequence raises
    (a new batch started without a reset). It is not saved (not in the state dict, zero after
    pickling).
    """

    time_steps: int | None

    @property
    def current_step(self) -> int:
        """The step the next counter-driven call will use."""
        return 0 if self._neuron_reset_since() else self.__dict__.get("_counter", 0)

    def _neuron_reset_since(self) -> bool:
        """Whether a neuron was reset (:func:`note_neuron_reset`) since this module's last step or reset."""
        return self.__dict__.get("_resets_seen", _neuron_resets) != _neuron_resets

    def reset_state(self) -> None:
        self.__dict__.update(_counter=0, _resets_seen=_neuron_resets, _batch=None)

    def reset(self) -> None:
        """Same as :meth:`reset_state` (SpikingJelly's spelling)."""
        self.reset_state()

    def _next_step(self, x) -> int:
        """The step of a counter-driven call on ``x`` ``(B, ...)``: after a neuron reset, the state is
        reset first; in the middle of a sequence the batch size must be the previous step's."""
        if self._neuron_reset_since():
            self.reset_state()
        t, batch = self.current_step, self.__dict__.get("_batch")
        if t and batch is not None and x.shape[0] != batch:
            raise ValueError(
                f"{type(self).__name__}: step {t} of a sequence got a batch of {x.shape[0]}, the previous step "
                f"{batch}: a new batch needs a reset first (bntt_snntorch.utils.reset(net)), or pass t explicitly"
            )
        return t

    def _advance(self, x) -> None:
        nxt = self.current_step + 1
        self.__dict__.update(
            _counter=nxt % self.time_steps if self.time_steps else nxt, _resets_seen=_neuron_resets, _batch=x.shape[0]
        )

    def __getstate__(self):
        state = super().__getstate__()
        for key in ("_counter", "_resets_seen", "_batch"):
            state.pop(key, None)
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
