"""Helpers for snnTorch-style stateful networks."""

from __future__ import annotations

import torch
from snntorch._neurons.neurons import SpikingNeuron
from torch import nn

from .step_mode import StepModule


@torch.no_grad()
def _zero_hidden_state(neuron: SpikingNeuron) -> None:
    # snnTorch keeps a neuron's hidden state (mem, syn, spk, ...) in non-persistent buffers.
    for name in neuron._non_persistent_buffers_set:
        state = getattr(neuron, name)
        if isinstance(state, torch.Tensor):
            setattr(neuron, name, torch.zeros_like(state))


def reset(net: nn.Module) -> nn.Module:
    """Reset the state of ``net`` only, before a new sequence; returns ``net``.

    What it resets, nested modules included:

    * every snnTorch neuron's hidden state (``snn.Leaky(init_hidden=True)``, ``Synaptic``, ...)
      and our :class:`~bntt_snntorch.Leaky`'s membrane: zeros of the same shape;
    * every step module's single-step state (``reset_state()``, :mod:`bntt_snntorch.step_mode`):
      BNTT / :class:`~bntt_snntorch.ThroughTime` / tdBN step counters back to 0, the membranes that
      blocks and networks keep in step mode "s" forgotten.

    Neurons and counters of other networks are untouched. ``snntorch.utils.reset(net)`` (snnTorch's
    helper, which knows no BNTT) zeroes the snnTorch-family neurons of every network of the process;
    the BNTT counters then follow as defined in :class:`~bntt_snntorch.step_mode.StepCounter`: back to
    step 0 when that reset reaches one of our :class:`~bntt_snntorch.Leaky` neurons (their reset is
    a new sequence), else they wrap after ``time_steps`` calls, so a loop of exactly ``time_steps``
    steps a batch is right with either helper; a shorter loop of snnTorch's own neurons needs this
    helper (or an explicit ``t``). A batch of another size in the middle of a sequence raises.
    """
    for module in net.modules():
        if isinstance(module, StepModule):
            module.reset_state()
        elif isinstance(module, SpikingNeuron):
            _zero_hidden_state(module)
    return net


def tune_cpu_allocator() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the system.

    Multi-step tensors are large (``(T*B, C, H, W)``: 100 MB for VGG9 at T=25,
    B=16). glibc serves every allocation above 32 MB with a fresh ``mmap``, so
    each one pays page faults on first touch; measured on 2 cores this costs a
    third of a VGG9 training step. With ``mmap`` disabled for malloc and no heap
    trimming (below 2 GiB free), freed blocks are reused without page faults. The process keeps
    its peak memory reserved. Called by ``train.py`` and the benchmarks; call it at the start
    of your own script for the same effect. Returns whether it applied (glibc
    Linux only).
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]  # mallopt(int, int): a larger value would wrap
    m_trim_threshold, m_mmap_max = -1, -4
    largest_int = 2**31 - 1  # trim only above 2 GiB of free memory at the heap's top
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, largest_int))


def cpu_bf16_support() -> tuple[bool | None, str]:
    """``(native, capability)``: whether this CPU has bfloat16 arithmetic (the avx512_bf16 or amx_bf16
    instructions; None where that cannot be read, outside Linux), and torch's name of its vector
    capability (``torch.backends.cpu.get_cpu_capability()``, e.g. "AVX2", "AVX512")."""
    capability = torch.backends.cpu.get_cpu_capability()
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None:
        return None, capability
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)), capability
