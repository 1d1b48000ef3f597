"""A normalisation a user adds in one file: a learnable gain per step and channel, no statistics."""

import torch
from torch import nn

from bntt_snntorch.step_mode import StepModule
from bntt_snntorch.temporal_norm import register_norm


class StepGain(StepModule, nn.Module):
    """``y_t = g_t * x_t`` with ``g`` of shape ``(time_steps, C)``."""

    default_step_mode = "m"

    def __init__(self, num_features: int, time_steps: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(time_steps, num_features))

    def step(self, x, t):
        return x * self.gain[t].view(1, -1, *([1] * (x.dim() - 2)))

    def multi_step(self, x_seq):
        return torch.stack([self.step(x, t) for t, x in enumerate(x_seq)])

    def forward(self, x):
        return self.multi_step(x)


@register_norm(label="step gain", per_step_statistics=True)
def toy_gain(num_features: int, num_steps: int, dims: int) -> StepGain:
    """A learnable gain per step and channel (test plug-in)."""
    return StepGain(num_features, num_steps)
