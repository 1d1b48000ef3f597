"""A plug-in distribution's module (tests/test_plugins.py installs it as a temporary .dist-info whose
entry point in the group ``bntt_snntorch.plugins`` names this module): importing it registers a neuron,
two norms and a data set, as a user's own package would."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

from bntt_snntorch.data import DatasetInfo, register_dataset
from bntt_snntorch.neurons import StepNeuron, register_neuron
from bntt_snntorch.step_mode import StepModule
from bntt_snntorch.temporal_norm import register_norm


class HardResetIF(StepNeuron):
    """``U = beta U + x``; spike (straight-through gradient) when ``U > threshold``; then ``U = 0``."""

    def __init__(self, beta: float, threshold: float = 1.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def step(self, x, mem=None):
        mem = self.beta * (torch.zeros_like(x) if mem is None else mem) + x
        z = mem - self.threshold
        spk = (z > 0).to(z.dtype) + z - z.detach()
        return spk, mem * (1 - spk.detach())


class PerSampleNorm(StepModule, nn.Module):
    """Each step normalised by its own per-sample mean and std: no per-channel affine map in eval."""

    default_step_mode = "m"

    def step(self, x, t=None):
        flat = x.flatten(1)
        return ((flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + 1e-5)).view_as(x)

    def multi_step(self, x_seq):
        return torch.stack([self.step(x) for x in x_seq])

    def forward(self, x):
        return self.multi_step(x)


@register_neuron
def plugin_if(beta: float, threshold: float = 1.0) -> HardResetIF:
    """An integrate-and-fire neuron from a plug-in."""
    return HardResetIF(beta, threshold)


@register_norm(label="per-sample norm", per_step_statistics=True)
def plugin_sample_norm(num_features: int, num_steps: int, dims: int) -> PerSampleNorm:
    """Per-sample normalisation from a plug-in."""
    return PerSampleNorm()


@register_dataset("plugin_blobs", DatasetInfo("plugin_blobs", 10, 1, 8))
def plugin_blobs(data_dir, download=False, options=None):
    """40 random 8x8 images of 10 classes (a plug-in data set)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 8, 8, generator=g), torch.arange(40) % 10
    return TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])
