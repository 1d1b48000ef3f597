"""Leaky integrate-and-fire as pure functions with autograd (Norse style).

``leaky_step`` is one step of ``snn.Leaky`` (and of the BNTT seed neuron), composed from
:mod:`bntt_snntorch.definition`; ``leaky_sequence_reference`` loops it over a time-major
sequence and is the reference every faster path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from . import definition
from .definition import Variant

RESET_MECHANISMS = ("subtract", "zero", "none")


class LeakyParams(NamedTuple):
    """Parameters of a leaky neuron layer.

    * ``beta``, ``threshold``: tensors broadcastable to the input (beta is clamped to [0, 1]).
    * ``spike_grad``: ``spk = spike_grad(mem - threshold)``.
    * ``reset_mechanism``: "subtract", "zero" or "none".
    * ``reset_delay``: snnTorch's flag; ``False`` applies the reset in the step that fired.
    * ``graded_spikes_factor``: spikes are multiplied by it (tensor or float).
    * ``detach_reset``: BNTT-seed / SpikingJelly convention: fire, then reset in the
      same step with the *detached* spike of that step, nothing carried over
      from the previous step. Overrides ``reset_delay``.
    """

    beta: torch.Tensor
    threshold: torch.Tensor
    spike_grad: Callable[[torch.Tensor], torch.Tensor]
    reset_mechanism: str = "subtract"
    reset_delay: bool = True
    graded_spikes_factor: torch.Tensor | float = 1.0
    detach_reset: bool = False


def leaky_step(x: torch.Tensor, mem: torch.Tensor, p: LeakyParams) -> tuple[torch.Tensor, torch.Tensor]:
    """One step with autograd: ``x`` and ``mem`` of shape ``(B, ...)``; returns ``(spk, mem)``.

    The update is :mod:`bntt_snntorch.definition`'s (``charge``, ``membrane_after``), with the
    spike through ``p.spike_grad`` so that autograd sees the surrogate: with
    ``detach_reset=False`` it is operation for operation ``snn.Leaky.forward`` (the delayed reset
    detached, snnTorch's same-step reset of ``reset_delay=False`` not); with
    ``detach_reset=True`` it is the BNTT seed neuron::

        U = beta * U + x;  S = H(U - theta);  U = U - S.detach() * theta
    """
    RESET, DELAYED, SAME = Variant.of(p.reset_mechanism, p.reset_delay, p.detach_reset).codes
    beta = definition.clamp_leak(p.beta)
    r = p.spike_grad(mem - p.threshold).detach() if (DELAYED or SAME == 1) else 0.0
    h = definition.charge(x, mem, r, beta, p.threshold, RESET, DELAYED)
    spk = p.spike_grad(h - p.threshold)
    fired = spk.detach() if SAME == 2 else spk
    return spk * p.graded_spikes_factor, definition.membrane_after(h, fired, r, p.threshold, RESET, SAME)


def leaky_sequence_reference(
    x_seq: torch.Tensor, p: LeakyParams, mem: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop :func:`leaky_step` over ``x_seq`` of shape ``(T, B, ...)``.

    Returns ``(spk_seq, mem_seq)``, both ``(T, B, ...)``; ``mem`` is the
    initial membrane (zeros when ``None``).
    """
    mem = torch.zeros_like(x_seq[0]) if mem is None else mem
    spikes, mems = [], []
    for x in x_seq:
        spk, mem = leaky_step(x, mem, p)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)
