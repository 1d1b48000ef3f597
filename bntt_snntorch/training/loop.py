"""Train and evaluate loops for spiking classifiers on encoded image batches."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

Encoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    samples: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EpochProgress:
    """Running sums of a training epoch; saved in mid-epoch checkpoints so a resumed epoch
    reports the same loss and accuracy as an uninterrupted one."""

    batches: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    def result(self) -> EpochResult:
        return EpochResult(self.loss_sum / max(self.seen, 1), self.correct / max(self.seen, 1), self.seen, self.seconds)


def autocast(device: torch.device, amp: str | None):
    """``torch.autocast`` for ``amp`` in {None, "bf16", "fp16"} (fp16 only on CUDA)."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _parameters_finite(optimizer: torch.optim.Optimizer) -> bool:
    params = [p.detach() for group in optimizer.param_groups for p in group["params"]]
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(params))).all())


def _to_device(images: torch.Tensor, device: torch.device, memory_format: torch.memory_format) -> torch.Tensor:
    """Images ``(B, C, H, W)`` in ``memory_format``; event frames ``(B, T, P, H, W)`` as they are."""
    if images.dim() != 4:
        return images.to(device, non_blocking=True)
    return images.to(device, non_blocking=True, memory_format=memory_format)


def _batches(loader, max_batches: int | None, desc: str, show: bool):
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    return tqdm(islice(loader, total), total=total, desc=desc, leave=False, disable=not show, dynamic_ncols=True)


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    encode: Encoder,
    device: torch.device,
    max_batches: int | None = None,
    desc: str = "train",
    progress: bool = True,
    amp: str | None = None,
    scaler: torch.amp.GradScaler | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    state: EpochProgress | None = None,
    on_batch_end: Callable[[EpochProgress], None] | None = None,
) -> EpochResult:
    """One pass over ``loader``: images ``(B, C, H, W)`` are encoded to ``(T, B, C, H, W)``
    and the model's logits ``(B, classes)`` trained with cross-entropy.

    ``amp``: autocast dtype ("bf16", "fp16" with ``scaler``) or None for float32.
    ``state``: progress of this epoch so far (resuming mid-epoch: its first
    ``state.batches`` batches are drawn and skipped, so the data order and
    augmentation stay those of an uninterrupted run). ``on_batch_end`` is called
    after every optimizer step (periodic checkpoints).
    Raises ``FloatingPointError`` on a non-finite loss, before the step.
    """
    model.train()
    state = EpochProgress() if state is None else state
    bar = _batches(loader, max_batches, desc, progress)
    start = time.perf_counter() - state.seconds
    for index, (images, labels) in enumerate(bar):
        if index < state.batches:
            continue
        images = _to_device(images, device, memory_format)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(encode(images))
            loss = F.cross_entropy(logits.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at batch {index} of the epoch")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if not _parameters_finite(optimizer):
            raise FloatingPointError(f"parameters became non-finite after the update at batch {index} of the epoch")
        state.batches = index + 1
        state.loss_sum += loss.item() * len(labels)
        state.correct += (logits.argmax(1) == labels).sum().item()
        state.seen += len(labels)
        state.seconds = time.perf_counter() - start
        bar.set_postfix(loss=f"{state.loss_sum / state.seen:.3f}", acc=f"{100 * state.correct / state.seen:.1f}%")
        if on_batch_end is not None:
            on_batch_end(state)
    return state.result()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    encode: Encoder,
    device: torch.device,
    max_batches: int | None = None,
    desc: str = "test",
    progress: bool = True,
    amp: str | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> EpochResult:
    """Loss and accuracy of ``model`` on ``loader`` in eval mode (BNTT running statistics)."""
    model.eval()
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    for images, labels in _batches(loader, max_batches, desc, progress):
        images = _to_device(images, device, memory_format)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(encode(images)).float()
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    return EpochResult(total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start)
