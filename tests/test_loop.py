"""The epoch loop keeps its sums on the device: the metrics equal those of the 0.1 loop (which read the
device four times a batch) bit for bit, and the device is read only every few batches."""

import csv
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bntt_snntorch import TrainConfig, train
from bntt_snntorch.training import loop

from .helpers import count_host_reads


# ----------------------------------------------------------------------------- the 0.1 loop, as it was (with
# the label smoothing added since)
def _reference_train_one_epoch(model, loader, optimizer, encode, options, *, desc, scaler, state, on_batch_end):
    device, max_batches, amp = options.device, options.max_batches, options.amp
    model.train()
    state = loop.EpochProgress() if state is None else state
    start = time.perf_counter() - state.seconds
    for index, (images, labels) in enumerate(loop._batches(loader, max_batches, desc, False)):
        if index < state.batches:
            continue
        images, labels = images.to(device), labels.to(device)
        with loop.autocast(device, amp):
            logits = model(encode(images))
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=options.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at batch {index} of the epoch")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        params = [p.detach() for group in optimizer.param_groups for p in group["params"]]
        if not bool(torch.isfinite(torch.stack(torch._foreach_norm(params))).all()):
            raise FloatingPointError(f"parameters became non-finite after the update at batch {index} of the epoch")
        state.batches = index + 1
        state.loss_sum += loss.item() * len(labels)
        state.correct += (logits.argmax(1) == labels).sum().item()
        state.seen += len(labels)
        state.seconds = time.perf_counter() - start
        if on_batch_end is not None:
            on_batch_end(state.batches, lambda: state)
    return state.result()


@torch.no_grad()
def _reference_evaluate(model, loader, encode, options, *, desc="test"):
    device, max_batches = options.device, options.max_batches
    model.eval()
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    for images, labels in loop._batches(loader, max_batches, desc, False):
        images, labels = images.to(device), labels.to(device)
        logits = model(encode(images)).float()
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
    return loop.EpochResult(total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start)


def _metrics(folder):
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "samples_per_s")} for r in rows]


def test_metrics_equal_those_of_the_loop_that_read_every_batch(tmp_path, monkeypatch):
    settings = dict(num_epochs=2, num_steps=4, seed=3, progress=False, max_batches=12)
    train(TrainConfig.from_recipe("digits", output_dir=str(tmp_path / "new"), **settings))
    from bntt_snntorch.training import trainer

    monkeypatch.setattr(trainer, "train_one_epoch", _reference_train_one_epoch)
    monkeypatch.setattr(trainer, "evaluate", _reference_evaluate)
    train(TrainConfig.from_recipe("digits", output_dir=str(tmp_path / "old"), **settings))
    new, old = _metrics(tmp_path / "new"), _metrics(tmp_path / "old")
    assert len(new) == 2 and new == old  # every column but the timings, as written (full float precision)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x_seq):
        return self.fc(x_seq.mean(0))


def _data(batches, batch=4):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(batch, 8, generator=g), torch.randint(0, 3, (batch,), generator=g)) for _ in range(batches)]


def test_the_loop_reads_the_device_once_every_read_every_batches():
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    encode = lambda x: x.unsqueeze(0).expand(2, *x.shape)  # noqa: E731
    with count_host_reads() as calls:
        result = loop.train_one_epoch(model, _data(10), opt, encode, loop.LoopOptions(progress=False, read_every=4))
    assert calls == ["tolist"] * 3  # after batches 4 and 8, and at the end
    assert result.samples == 40
    with count_host_reads() as calls:
        loop.evaluate(model, _data(6), encode, loop.LoopOptions(progress=False))
    assert calls == ["tolist"]


def test_a_non_finite_loss_is_caught_at_the_next_read_and_names_the_batches():
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = _data(10)
    data[5] = (torch.full((4, 8), float("nan")), data[5][1])
    saved = []
    encode = lambda x: x.unsqueeze(0)  # noqa: E731
    with pytest.raises(FloatingPointError, match="between batches 4 and 5 of the epoch"):
        loop.train_one_epoch(
            model, data, opt, encode, loop.LoopOptions(progress=False, read_every=4),
            on_batch_end=lambda n, read: saved.append(read().batches) if n % 2 == 0 else None,
        )  # fmt: skip
    assert saved == [2, 4]  # the save after batch 6 (index 5, the NaN) read the flag and stopped
