"""torchrun support: process-group setup from the environment, rank helpers, synchronised BNTT."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``); ``(rank, world_size)``.

    Without torchrun's variables this is a single process: ``(0, 1)``. NCCL on CUDA, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and shows progress."""
    return not dist.is_initialized() or dist.get_rank() == 0


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum Python numbers over ranks (identity in a single process)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def sync_batchnorm_tt(model: nn.Module) -> nn.Module:
    """Make every BNTT layer of ``model`` compute its training statistics over all ranks."""
    from ..bntt import BatchNormTT

    for m in model.modules():
        if isinstance(m, BatchNormTT):
            m.synchronized = True
    return model


def gather_generator_states(gen: torch.Generator, world: int) -> list[torch.Tensor]:
    """Every rank's Poisson-generator state, in rank order (for checkpoints)."""
    state = gen.get_state()
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states
