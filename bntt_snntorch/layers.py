"""Spiking building blocks that run per step or multi-step with one state dict.

Every block has two entry points:

* ``block(x_seq)`` — multi-step: ``(T, B, ...)`` in, ``(T, B, ...)`` out;
  synapses (conv / linear) and pooling run once on the ``(T*B, ...)`` batch,
  BNTT in one call, the neuron as a scan over T.
* ``block.step(x, t, state)`` — one step ``(B, ...)`` in snnTorch style;
  returns ``(y, state)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .bntt import BatchNormTT
from .kernels import bntt_leaky_scan, select_backend, spike_synapse
from .kernels.pooling import avg_pool2d
from .neurons import Leaky


def _over_time(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Apply a stateless ``module`` to every step of ``x_seq`` ``(T, B, ...)`` as one ``(T*B, ...)`` batch."""
    y = module(x_seq.flatten(0, 1))
    return y.unflatten(0, x_seq.shape[:2])


class TimeDistributed(nn.Module):
    """A stateless layer (pooling, flatten, dropout) applied to each step independently."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if type(self.module) is nn.AvgPool2d and x_seq.dim() == 5:  # same values, nothing saved for backward
            return avg_pool2d(x_seq.flatten(0, 1), self.module).unflatten(0, x_seq.shape[:2])
        return _over_time(self.module, x_seq)

    def step(self, x: torch.Tensor, t: int, state=None):
        return self.module(x), state


class SpikingBlock(nn.Module):
    """``synapse -> norm -> neuron``: e.g. Conv2d (no bias) -> BNTT -> leaky neuron.

    Args:
        synapse: a stateless layer (``nn.Conv2d``, ``nn.Linear``).
        norm: a :class:`~bntt_snntorch.BatchNormTT2d`/``1d`` (or any
            :class:`~bntt_snntorch.ThroughTime`), or ``None`` for no normalisation.
        neuron: a :class:`~bntt_snntorch.Leaky` (its step mode does not matter: the block calls
            ``multi_step`` / ``step`` explicitly).
        input_scale: the synaptic current is multiplied by it before
            integration (``1 - lambda`` in the rate-vs-direct models), default 1.
        input_quantum: the block's input is integer multiples of it (spikes: the previous
            neuron's graded factor; after 2x2 average pooling a quarter of that). Set, a plain
            conv / linear synapse keeps its input as int8 codes for backward when they are
            exact (checked each call; otherwise the input is kept as is). ``None``: no compaction.

    The block's state is the neuron's membrane ``(B, ...)``.
    """

    def __init__(
        self,
        synapse: nn.Module,
        norm: nn.Module | None,
        neuron: Leaky,
        input_scale: float = 1.0,
        input_quantum: float | None = None,
    ):
        super().__init__()
        self.synapse = synapse
        self.norm = norm
        self.neuron = neuron
        self.input_scale = input_scale
        self.input_quantum = input_quantum

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, ...)`` spikes in -> ``(T, B, ...)`` spikes out.

        With BNTT and a fusable neuron (the usual case) normalisation and neuron run as one
        kernel that keeps only the synapse output for backward
        (:func:`bntt_snntorch.kernels.bntt_leaky_scan`).
        """
        if self.input_quantum is not None and torch.is_grad_enabled() and spike_synapse.supports(self.synapse):
            cur = spike_synapse.spike_synapse(self.synapse, x_seq.flatten(0, 1), self.input_quantum)
            cur = cur.unflatten(0, x_seq.shape[:2])
        else:
            cur = _over_time(self.synapse, x_seq)
        if self._fused(cur):
            weight, mean, var = self.norm.statistics(cur)
            eps, training = self.norm[0].eps, self.norm.training
            return bntt_leaky_scan(cur, weight, mean, var, self.neuron.params(), eps, self.input_scale, training)
        if self.norm is not None:
            cur = self.norm(cur)
        if self.input_scale != 1.0:
            cur = cur * self.input_scale
        return self.neuron.multi_step(cur)[0]

    def _fused(self, cur: torch.Tensor) -> bool:
        neuron = self.neuron
        return (
            isinstance(self.norm, BatchNormTT)
            and self.norm.fusable()
            and not (neuron.inhibition or neuron.state_quant)
            and select_backend(cur, neuron.params(), neuron.backend) == "torch"
        )

    def step(self, x: torch.Tensor, t: int, mem: torch.Tensor | None = None):
        """Step ``t``: ``(B, ...)`` in -> ``(spk, mem)``."""
        cur = self.synapse(x)
        if self.norm is not None:
            cur = self.norm(cur, t)
        if self.input_scale != 1.0:
            cur = cur * self.input_scale
        return self.neuron.step(cur, mem)

    def extra_repr(self) -> str:
        parts = [] if self.input_scale == 1.0 else [f"input_scale={self.input_scale}"]
        parts += [] if self.input_quantum is None else [f"input_quantum={self.input_quantum}"]
        return ", ".join(parts)
