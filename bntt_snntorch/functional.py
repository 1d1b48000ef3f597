"""Leaky integrate-and-fire math as pure functions (Norse style).

``leaky_step`` is one step of ``snn.Leaky`` (and of the BNTT seed neuron);
``leaky_sequence_reference`` loops it over a time-major sequence and is the
reference every faster path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

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
    """One step: ``x`` and ``mem`` of shape ``(B, ...)``; returns ``(spk, mem)``.

    With ``detach_reset=False`` this is operation for operation the update of
    ``snn.Leaky.forward`` (reset from the previous membrane, detached; with
    ``reset_delay=False`` the extra same-step reset of snnTorch).
    With ``detach_reset=True`` it is the BNTT seed neuron::

        U = beta * U + x;  S = H(U - theta);  U = U - S.detach() * theta
    """
    beta = p.beta.clamp(0, 1)
    if p.detach_reset:
        mem = beta * mem + x
        spk = p.spike_grad(mem - p.threshold)
        fired = spk.detach()
        if p.reset_mechanism == "subtract":
            mem = mem - fired * p.threshold
        elif p.reset_mechanism == "zero":
            mem = mem * (1 - fired)
        return spk * p.graded_spikes_factor, mem

    reset = p.spike_grad(mem - p.threshold).clone().detach()
    if p.reset_mechanism == "subtract":
        new_mem = beta * mem + x - reset * p.threshold
    elif p.reset_mechanism == "zero":
        new_mem = beta * ((1 - reset) * mem) + x
    else:
        new_mem = beta * mem + x
    spk = p.spike_grad(new_mem - p.threshold) * p.graded_spikes_factor
    if not p.reset_delay:
        do_reset = spk / p.graded_spikes_factor - reset
        if p.reset_mechanism == "subtract":
            new_mem = new_mem - do_reset * p.threshold
        elif p.reset_mechanism == "zero":
            new_mem = new_mem - do_reset * new_mem
    return spk, new_mem


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
