"""A neuron a user adds in one file: integrate-and-fire with a hard reset and a boxcar surrogate."""

import torch

from bntt_snntorch.neurons import StepNeuron, register_neuron


class _Boxcar(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (z.abs() < 0.5).to(grad.dtype)


class ToyIF(StepNeuron):
    """``U = beta U + x``; spike when ``U > threshold``; then ``U = 0``."""

    def __init__(self, beta: float, threshold: float = 1.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def step(self, x, mem=None):
        mem = torch.zeros_like(x) if mem is None else mem
        mem = self.beta * mem + x
        spk = _Boxcar.apply(mem - self.threshold)
        return spk, mem * (1 - spk.detach())


@register_neuron
def toy_if(beta: float, threshold: float = 1.0) -> ToyIF:
    """A toy integrate-and-fire neuron (test plug-in)."""
    return ToyIF(beta, threshold)
