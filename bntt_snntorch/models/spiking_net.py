"""``SpikingNet``: a stack of spiking blocks and a readout, run multi-step or per step."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import mark_spike_inputs
from ..step_mode import StepContainer, StepCounter, set_step_mode


class SpikingNet(StepContainer, StepCounter, nn.Module):
    """Feature blocks (:mod:`bntt_snntorch.layers`) followed by a linear readout.

    The readout has no neuron: its output is averaged over the steps (the
    BNTT seed's ``sum_t fc(s_t) / T``). Blocks fed by spikes keep them as int8 codes for
    backward (:func:`~bntt_snntorch.layers.mark_spike_inputs`, applied here; the first block's
    input depends on the encoding: ``mark_spike_inputs(model.features, 1.0)`` for Poisson
    spikes, as training does). Step mode (:mod:`bntt_snntorch.step_mode`):

    * ``"m"`` (default): ``model(x_seq)`` — the fast multi-step path,
      ``(T, B, C, H, W)`` -> logits ``(B, classes)``.
    * ``"s"``: ``model(x_t)`` — one step ``(B, C, H, W)`` -> that step's readout
      ``(B, classes)``; the state (membranes, step counter) is kept until
      ``model.reset()`` / :func:`bntt_snntorch.utils.reset`. The mean of the readouts
      of T steps is what mode "m" returns.

    Whatever the mode:

    * ``model.step(x_t, t, state)`` — one step with explicit state; returns
      ``(readout_t (B, classes), state)``; start with ``state=None``.
    * ``model.forward_steps(x_seq)`` — the logits after each step, ``(T, B, classes)``.
    * ``model.forward_per_step(x_seq)`` — the per-step reference of mode "m".
    """

    default_step_mode = "m"

    def __init__(self, features: list[nn.Module], classifier: nn.Linear, num_steps: int, in_channels: int):
        super().__init__()
        self.features = nn.Sequential(*features)
        self.classifier = classifier
        self.num_steps = num_steps
        self.in_channels = in_channels
        mark_spike_inputs(self.features)
        set_step_mode(self, self.default_step_mode)

    @property
    def time_steps(self) -> int:
        """The single-step counter wraps after ``num_steps`` steps."""
        return self.num_steps

    def _check_input(self, x_seq: torch.Tensor) -> None:
        if x_seq.dim() < 3 or x_seq.shape[2] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects an encoded sequence (T, B, C={self.in_channels}, H, W), "
                f"got shape {tuple(x_seq.shape)}; encode images with bntt_snntorch.encoding.encode "
                "(for one step (B, C, H, W) set step_mode='s')"
            )
        if x_seq.shape[0] > self.num_steps:
            raise ValueError(
                f"{type(self).__name__} was built for num_steps={self.num_steps}, got a sequence of "
                f"{x_seq.shape[0]} steps (shape {tuple(x_seq.shape)})"
            )

    def _check_step(self, x: torch.Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}(step_mode='s') expects one step (B, C={self.in_channels}, H, W), got "
                f"shape {tuple(x.shape)} (for a sequence (T, B, C, H, W) set step_mode='m')"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Step mode "m": ``(T, B, C, H, W)`` -> logits ``(B, classes)``; "s": ``(B, C, H, W)`` ->
        this step's readout ``(B, classes)`` (state kept until :meth:`reset`)."""
        if self.step_mode == "m":
            return self.multi_step(x)
        self._check_step(x)
        out, state = self.step(x, self._next_step(x), self.__dict__.get("_state"))
        self.__dict__["_state"] = state
        self._advance(x)
        return out

    def reset_state(self) -> None:
        """Forget the single-step state: membranes and step counter."""
        super().reset_state()
        self.__dict__.pop("_state", None)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, C, H, W)`` -> logits ``(B, classes)``, all steps at once per layer."""
        self._check_input(x_seq)
        return self.classifier(self.features(x_seq).mean(0))

    def forward_steps(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Logits after each step: ``(T, B, C, H, W)`` -> ``(T, B, classes)``.

        Entry ``t`` is what :meth:`forward` returns for the first ``t + 1``
        steps (every layer is causal and BNTT step ``t`` uses its own
        statistics), computed in one multi-step pass.
        """
        self._check_input(x_seq)
        spikes = self.features(x_seq)
        steps = torch.arange(1, x_seq.shape[0] + 1, device=x_seq.device, dtype=spikes.dtype)
        running_mean = spikes.cumsum(0) / steps.view(-1, *([1] * (spikes.dim() - 1)))
        return self.classifier(running_mean)

    def step(self, x: torch.Tensor, t: int, state: list | None = None):
        """Step ``t`` of ``(B, C, H, W)`` -> ``(readout (B, classes), state)``."""
        state = [None] * len(self.features) if state is None else state
        new_state = []
        for layer, s in zip(self.features, state):
            x, s = layer.step(x, t, s)
            new_state.append(s)
        return self.classifier(x), new_state

    def forward_per_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The per-step reference of mode "m": loops :meth:`step` over T."""
        self._check_input(x_seq)
        state, total = None, 0
        for t, x in enumerate(x_seq):
            out, state = self.step(x, t, state)
            total = total + out
        return total / x_seq.shape[0]
