"""Helpers for snnTorch-style stateful networks."""

from __future__ import annotations

import torch
from snntorch._neurons.neurons import SpikingNeuron
from torch import nn

from .through_time import ThroughTime


@torch.no_grad()
def _zero_hidden_state(neuron: SpikingNeuron) -> None:
    # snnTorch keeps a neuron's hidden state (mem, syn, spk, ...) in non-persistent buffers.
    for name in neuron._non_persistent_buffers_set:
        state = getattr(neuron, name)
        if isinstance(state, torch.Tensor):
            setattr(neuron, name, torch.zeros_like(state))


def reset(net: nn.Module) -> nn.Module:
    """Reset the state of ``net`` only, before a new sequence.

    Zeroes the hidden state of every snnTorch neuron inside ``net``, nested
    modules included (``snn.Leaky(init_hidden=True)``, ``Synaptic``, ...), and
    sets every BNTT / :class:`~bntt_snntorch.ThroughTime` step counter to 0.
    Unlike ``snntorch.utils.reset``, neurons of other networks are untouched
    and nested neurons are not missed. Returns ``net``.
    """
    for module in net.modules():
        if isinstance(module, SpikingNeuron):
            _zero_hidden_state(module)
        elif isinstance(module, ThroughTime):
            module.reset()
    return net
