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

from .online import at_least_float32, online_backward

Encoder = Callable[[torch.Tensor], torch.Tensor]  # images (B, ...) -> (T, B, ...); a SequenceEncoder also has .steps
READ_EVERY = 25  # batches between host reads of the running sums (progress bar)


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


@dataclass
class LoopOptions:
    """How :func:`train_one_epoch` and :func:`evaluate` run: on ``device``, with autocast ``amp``
    ("bf16", "fp16" or None for float32) and images in ``memory_format``, at most ``max_batches``
    batches, a progress bar if ``progress``; ``training``: "bptt" (one loss on the mean readout,
    backpropagated through time) or an online rule, "sltt" / "ottt" (a loss and a backward per step,
    memory independent of T; ``sltt_k`` steps backpropagated of T; :mod:`.online`); the device's sums
    are read every ``read_every`` batches; the training loss has ``label_smoothing`` (the test loss none)."""

    device: torch.device | str = "cpu"
    amp: str | None = None
    memory_format: torch.memory_format = torch.contiguous_format
    max_batches: int | None = None
    progress: bool = True
    training: str = "bptt"
    sltt_k: int | None = None
    read_every: int = READ_EVERY
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)


def autocast(device: torch.device, amp: str | None):
    """``torch.autocast`` for ``amp`` in {None, "bf16", "fp16"} (fp16 only on CUDA)."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _parameters_finite(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """Whether every parameter is finite, as a 0-d bool tensor on the parameters' device (no host read)."""
    params = [p.detach() for group in optimizer.param_groups for p in group["params"]]
    return torch.isfinite(torch.stack(torch._foreach_norm(params))).all()


class _DeviceSums:
    """An epoch's running sums kept on the device and read to the host in one transfer.

    ``loss_sum`` accumulates ``loss * batch`` in float64 (the same products and order as
    Python floats: bit-equal to summing ``loss.item() * batch`` on the host), ``correct`` in
    int64; ``finite`` is false once a loss or a parameter was not finite.
    """

    def __init__(self, state: EpochProgress, device: torch.device):
        self.loss_sum = torch.tensor(state.loss_sum, dtype=torch.float64, device=device)
        self.correct = torch.tensor(state.correct, dtype=torch.int64, device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_sum += loss.detach().double() * len(labels)
        self.correct += (logits.argmax(1) == labels).sum()
        self.finite &= torch.isfinite(loss)

    def read(self) -> tuple[float, int, bool]:
        """``(loss_sum, correct, finite)``: the one host read."""
        loss_sum, correct, finite = torch.stack([self.loss_sum, self.correct.double(), self.finite.double()]).tolist()
        return loss_sum, int(correct), bool(finite)


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
    options: LoopOptions | None = None,
    *,
    desc: str = "train",
    scaler: torch.amp.GradScaler | None = None,
    state: EpochProgress | None = None,
    on_batch_end: Callable[[int, Callable[[], EpochProgress]], None] | None = None,
) -> EpochResult:
    """One pass over ``loader``: images ``(B, C, H, W)`` are encoded to ``(T, B, C, H, W)``
    and the model's logits ``(B, classes)`` trained with cross-entropy.

    ``options``: device, autocast, rule and batches (:class:`LoopOptions`; ``amp="fp16"`` wants a
    ``scaler``). ``state``: progress of this epoch so far (resuming mid-epoch: its first
    ``state.batches`` batches are drawn and skipped, so the data order and
    augmentation stay those of an uninterrupted run).

    Nothing is read back from the device inside a batch: the loss and accuracy sums and a
    non-finite flag stay there and are read every ``options.read_every`` batches (for the progress
    bar) and at the end. ``on_batch_end(batches_done, read)`` is called after every optimizer
    step; ``read()`` reads the sums (one host read) and returns the progress to checkpoint.
    Any read raises ``FloatingPointError`` naming the batches since the last read if a loss or
    a parameter became non-finite there, so no non-finite state is ever returned for saving.
    """
    options = LoopOptions() if options is None else options
    device, amp = options.device, options.amp
    model.train()
    state = EpochProgress() if state is None else state
    sums = _DeviceSums(state, device)
    bar = _batches(loader, options.max_batches, desc, options.progress)
    start = time.perf_counter() - state.seconds
    checked = state.batches  # batches known to be finite

    def read() -> EpochProgress:
        nonlocal checked
        loss_sum, correct, finite = sums.read()
        if not finite:
            raise FloatingPointError(
                f"the loss or the parameters became non-finite between batches {checked} and {state.batches - 1} "
                "of the epoch"
            )
        checked = state.batches
        state.loss_sum, state.correct, state.seconds = loss_sum, correct, time.perf_counter() - start
        return state

    for index, (images, labels) in enumerate(bar):
        if index < state.batches:
            continue
        images = _to_device(images, device, options.memory_format)
        labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        scale = scaler.scale if scaler is not None else (lambda value: value)
        if options.training == "bptt":
            with autocast(device, amp):
                logits = model(encode(images))
                loss = F.cross_entropy(at_least_float32(logits), labels, label_smoothing=options.label_smoothing)
            scale(loss).backward()
        else:
            if hasattr(encode, "steps"):  # a SequenceEncoder: each step made when the rule reaches it
                steps, num_steps = encode.steps(images), encode.num_steps
            else:
                steps, num_steps = encode(images), None
            online_amp = lambda: autocast(device, amp)  # noqa: E731
            loss, logits = online_backward(
                model, steps, labels, options.training, options.sltt_k, online_amp, scale, num_steps,
                options.label_smoothing,
            )  # fmt: skip
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        sums.add(loss, logits, labels)
        sums.finite &= _parameters_finite(optimizer)
        state.batches = index + 1
        state.seen += len(labels)
        if (state.batches - checked) % options.read_every == 0:
            read()
            bar.set_postfix(loss=f"{state.loss_sum / state.seen:.3f}", acc=f"{100 * state.correct / state.seen:.1f}%")
        if on_batch_end is not None:
            on_batch_end(state.batches, read)
    return read().result()


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, encode: Encoder, options: LoopOptions | None = None, *, desc: str = "test"
) -> EpochResult:
    """Loss and accuracy of ``model`` on ``loader`` in eval mode (BNTT running statistics); the sums
    stay on the device until the end (one host read)."""
    options = LoopOptions() if options is None else options
    device, amp = options.device, options.amp
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, start = 0, time.perf_counter()
    for images, labels in _batches(loader, options.max_batches, desc, options.progress):
        images = _to_device(images, device, options.memory_format)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = at_least_float32(model(encode(images)))
        total_loss += F.cross_entropy(logits, labels, reduction="sum").double()
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    loss_sum, hits = torch.stack([total_loss, correct.double()]).tolist()  # the one host read
    return EpochResult(loss_sum / max(seen, 1), int(hits) / max(seen, 1), seen, time.perf_counter() - start)
