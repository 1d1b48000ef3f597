"""The data-set registry: names, what each holds, and one builder signature.

A builder is ``builder(data_dir: Path, download: bool, options: DataOptions) -> (train, test)``
and is registered with ``@register_dataset(name, DatasetInfo(...))``. Static image sets
ignore the frame settings in ``options``; event sets use them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch.utils.data import Dataset

from ..registry import Registry, RegistryEntry

Builder = Callable[[Path, bool, "DataOptions"], tuple[Dataset, Dataset]]


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not where it was looked for; the message says where to put it."""


class CorruptRecordingError(RuntimeError):
    """An event recording cannot be decoded; the message names the file."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an attack need to know of a data set. ``mean``/``std``: the per-channel
    normalisation applied to pixels in [0, 1] (so pixel-unit quantities map to ``x / std``);
    ``None`` when computed on first use (the ``stats`` given to :func:`register_dataset`)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple | None = (0.0,)
    std: tuple | None = (1.0,)
    events: bool = False  # samples are frames (T, 2, H, W), not images


@dataclass(frozen=True)
class DataOptions:
    """Settings every builder receives; the frame settings apply to event data sets only."""

    num_steps: int = 10  # frames per recording (T)
    size: int | None = None  # frame size; None: the sensor's
    augment: tuple | None = None  # training augmentation; None: the data set's default (event sets: flip, translate)
    num_workers: int = 0  # processes building the frame cache
    skip_corrupt: bool = False
    progress: bool = True
    seed: int = 0  # seeds the draws of a training augmentation that has its own (digits' shifts)


@dataclass(frozen=True, kw_only=True)
class DatasetEntry(RegistryEntry):
    """A registered data set: ``factory`` is its builder; ``stats`` computes ``(mean, std)`` on first
    use where ``info`` leaves them ``None``."""

    info: DatasetInfo
    stats: Callable[[], tuple[float, float]] | None = None


DATASETS: Registry[DatasetEntry] = Registry("dataset", DatasetEntry)
list_datasets = DATASETS.names


def register_dataset(name: str, info: DatasetInfo, stats: Callable[[], tuple[float, float]] | None = None):
    """Decorator: make ``builder`` available as ``name`` to :func:`build_datasets` and ``--dataset``.
    ``stats``: computes ``(mean, std)`` on first use when ``info`` leaves them ``None``."""
    return DATASETS.register(name=name, info=info, stats=stats)


def dataset_info(name: str, frame_size: int | None = None) -> DatasetInfo:
    """What ``name`` holds; for event data sets ``frame_size`` (``--dvs-size``) replaces the sensor size."""
    entry = DATASETS.get(name)
    info = entry.info
    if info.events and frame_size:
        info = replace(info, image_size=frame_size)
    if info.mean is None and entry.stats is not None:
        mean, std = entry.stats()
        info = replace(info, mean=(mean,), std=(std,))
    return info


def build_datasets(
    name: str, data_dir: str | os.PathLike, download: bool = False, options: DataOptions | None = None
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``(train, test, info)`` for data set ``name`` under ``data_dir``.

    Image sets yield ``(image (C, H, W), label)``; event sets ``(frames (T, 2, H, W), label)``
    with the frame settings of ``options``. Raises :class:`DatasetNotFoundError` with a
    one-line message naming the path looked at and how to get the data.
    """
    options = options or DataOptions()
    info = dataset_info(name, options.size)  # raises for an unknown name
    train, test = DATASETS.get(name).factory(Path(data_dir), download, options)
    return train, test, info
