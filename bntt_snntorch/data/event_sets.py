"""N-MNIST, DVS Gesture and N-Caltech101, read from the layouts tonic downloads and extracts to.

Each set is listed from disk (its archives extracted first where only they are there), checked
complete against its official recording count, decoded by :mod:`.event_readers` (equal to tonic's
readers) and binned into cached frames by :func:`.events.framed_split`, as DVS-CIFAR10 is:

=============  =====================================================  ===========  =========================
name           files under ``<data_dir>``                             frames       split
=============  =====================================================  ===========  =========================
``nmnist``     ``NMNIST/{Train,Test}/<digit>/*.bin``                  34x34x2      official: 60,000 / 10,000
``dvsgesture`` ``DVSGesture/ibmGesture{Train,Test}/user*/<label>.npy`` 128x128x2    official (users): 1,077 / 264
``ncaltech101`` ``NCALTECH101/Caltech101/<class>/*.bin``              240x240x2    fixed 9:1 per class
=============  =====================================================  ===========  =========================

N-Caltech101's recordings are at most 240 wide and 180 high (each shifted to start at 0, as tonic
does); their frames are padded to a 240x240 square at the bottom: the events keep their coordinates,
so the frames equal tonic's ``ToFrame(sensor_size=(240, 240, 2))``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tonic
from tonic.download_utils import extract_archive
from torch.utils.data import Dataset

from .event_readers import atis_columns, ncaltech_columns, read_gesture_npy
from .events import framed_split, natural_key, recordings_digest, stratified_split
from .registry import DataOptions, DatasetInfo, DatasetNotFoundError, register_dataset


@dataclass(frozen=True)
class Part:
    """One folder of recordings as tonic extracts it, the archive it comes from, and its complete count."""

    folder: str  # under the data set's folder: "Train"
    archive: str  # the file tonic downloads into the data set's folder: "train.zip"
    url: str
    count: int  # recordings in a complete copy
    inner: str | None = None  # an archive the downloaded one holds, extracted in turn (N-Caltech101)


@dataclass(frozen=True)
class EventSet:
    """Where tonic puts a data set (``<data_dir>/<folder>``), its parts and its recordings' suffix."""

    title: str
    folder: str
    suffix: str
    parts: tuple[Part, ...]
    download: Callable[[str], object]  # tonic's class, called with the data folder: downloads and extracts


NMNIST = EventSet(
    "N-MNIST",
    "NMNIST",
    ".bin",
    (
        Part("Train", "train.zip", tonic.datasets.NMNIST.train_url, 60_000),
        Part("Test", "test.zip", tonic.datasets.NMNIST.test_url, 10_000),
    ),
    lambda root: (tonic.datasets.NMNIST(root, train=True), tonic.datasets.NMNIST(root, train=False)),
)
DVS_GESTURE = EventSet(
    "DVS Gesture",
    "DVSGesture",
    ".npy",
    (
        Part("ibmGestureTrain", "ibmGestureTrain.tar.gz", tonic.datasets.DVSGesture.train_url, 1_077),
        Part("ibmGestureTest", "ibmGestureTest.tar.gz", tonic.datasets.DVSGesture.test_url, 264),
    ),
    lambda root: (tonic.datasets.DVSGesture(root, train=True), tonic.datasets.DVSGesture(root, train=False)),
)
NCALTECH101 = EventSet(
    "N-Caltech101",
    "NCALTECH101",
    ".bin",
    (Part("Caltech101", "N-Caltech101-archive.zip", tonic.datasets.NCALTECH101.url, 8_709, inner="Caltech101.zip"),),
    lambda root: tonic.datasets.NCALTECH101(root),
)

NMNIST_SENSOR = tonic.datasets.NMNIST.sensor_size  # (34, 34, 2)
GESTURE_SENSOR = tonic.datasets.DVSGesture.sensor_size  # (128, 128, 2)
NCALTECH101_SENSOR = (240, 240, 2)  # recordings are at most 240 x 180: padded to a square at the bottom
NCALTECH101_CLASSES = 101  # 100 objects and BACKGROUND_Google


class Recordings(Dataset):
    """Event recordings on disk: ``data`` (their paths), ``targets`` (their labels); item ``i`` is
    ``(events, target)`` with ``events`` what ``read`` gives: a structured array (x, y, t, p) as tonic's
    data set gives it, or :class:`~.event_readers.EventColumns` of the same events."""

    def __init__(self, paths: list[str], targets: list[int], read: Callable):
        self.data, self.targets, self.read = list(paths), list(targets), read

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.read(self.data[index]), self.targets[index]


def locate(data_dir: Path, spec: EventSet, download: bool) -> list[list[tuple[str, str]]]:
    """The recordings of each part of ``spec`` under ``<data_dir>/<spec.folder>`` (:func:`listing`), once
    every part holds its complete count: archives found there are extracted first, and with ``download``
    tonic fetches what is missing. Raises :class:`DatasetNotFoundError` in one line naming the folder,
    the count found and where to get it."""
    root = data_dir / spec.folder
    found = _listings(root, spec)
    missing = _incomplete(spec, found)
    if missing and any((root / part.archive).exists() or (part.inner and (root / part.inner).exists())
                       for part in missing):  # fmt: skip
        _extract(root, missing)
        found = _listings(root, spec)
    if _incomplete(spec, found) and download:
        spec.download(str(data_dir))
        _extract(root, _incomplete(spec, found))
        found = _listings(root, spec)
    missing = _incomplete(spec, found)
    if missing:
        part = missing[0]
        fetch = " and ".join(f"{p.archive} from {p.url}" for p in missing)
        raise DatasetNotFoundError(
            f"{spec.title} not found: {len(found[spec.parts.index(part)])} of {part.count} {spec.suffix} "
            f"recordings in {root / part.folder}; download {fetch} and extract into {root}, or pass --download"
        )
    return found


def listing(folder: Path, suffix: str) -> list[tuple[str, str]]:
    """``(sub-folder name, file path)`` of every ``*suffix`` file one level under ``folder``, in a
    machine-independent order (sub-folder, then file name, digit runs compared as numbers)."""
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted((e for e in os.scandir(folder) if e.is_dir()), key=lambda e: natural_key(e.name)):
        names = sorted((e.name for e in os.scandir(sub.path) if e.name.endswith(suffix)), key=natural_key)
        found += [(sub.name, os.path.join(sub.path, name)) for name in names]
    return found


def _listings(root: Path, spec: EventSet) -> list[list[tuple[str, str]]]:
    return [listing(root / part.folder, spec.suffix) for part in spec.parts]


def _incomplete(spec: EventSet, found: list[list]) -> list[Part]:
    return [part for part, files in zip(spec.parts, found) if len(files) < part.count]


def _extract(root: Path, parts: list[Part]) -> None:
    """Extract each part's downloaded archive (and the archive inside it) into ``root``, as tonic does."""
    for part in parts:
        if (root / part.archive).exists() and not (part.inner and (root / part.inner).exists()):
            extract_archive(str(root / part.archive), str(root))
        if part.inner and (root / part.inner).exists():
            extract_archive(str(root / part.inner), str(root))


def _framed(name: str, source: Recordings, sensor, options: DataOptions, data_dir: Path, n_train: int | None, rule):
    """Train / test cached frames of ``source``: its first ``n_train`` recordings train (an official split),
    or with ``n_train=None`` the fixed 9:1 split within each class. The split's rule and sizes are kept
    as ``split`` on both sets (the trainer writes it into the run's ``config.json``)."""
    if n_train is None:
        train_idx, test_idx = stratified_split(source.targets)
    else:
        train_idx, test_idx = range(n_train), range(n_train, len(source))
    cache, digest = data_dir / "frame-cache", recordings_digest(source.data)
    train, test = framed_split(source, name, sensor, options, cache, train_idx, test_idx, digest)
    train.split = test.split = {"rule": rule, "train": len(train), "test": len(test)}
    return train, test


@register_dataset("nmnist", DatasetInfo("nmnist", 10, 2, NMNIST_SENSOR[0], events=True))
def nmnist(data_dir: Path, download: bool, options: DataOptions):
    """N-MNIST (snnTorch's tutorial 7) from ``<data_dir>/NMNIST/{Train,Test}/<digit>/*.bin``: the official
    60,000 / 10,000 split; the label is the digit folder's last character, as tonic reads it."""
    train_files, test_files = locate(data_dir, NMNIST, download)
    files = train_files + test_files
    source = Recordings([path for _, path in files], [int(digit[-1]) for digit, _ in files], atis_columns)
    return _framed("nmnist", source, NMNIST_SENSOR, options, data_dir, len(train_files), "official: Train / Test")


@register_dataset("dvsgesture", DatasetInfo("dvsgesture", 11, 2, GESTURE_SENSOR[0], events=True))
def dvsgesture(data_dir: Path, download: bool, options: DataOptions):
    """DVS Gesture from ``<data_dir>/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy``
    (tonic's preprocessed recordings, one gesture a file): the official split by user (1-23 train,
    24-29 test)."""
    train_files, test_files = locate(data_dir, DVS_GESTURE, download)
    files = train_files + test_files
    labels = [int(os.path.basename(path)[: -len(".npy")]) for _, path in files]
    source = Recordings([path for _, path in files], labels, read_gesture_npy)
    rule = "official: users of ibmGestureTrain / ibmGestureTest"
    return _framed("dvsgesture", source, GESTURE_SENSOR, options, data_dir, len(train_files), rule)


@register_dataset("ncaltech101", DatasetInfo("ncaltech101", NCALTECH101_CLASSES, 2, NCALTECH101_SENSOR[0], events=True))
def ncaltech101(data_dir: Path, download: bool, options: DataOptions):
    """N-Caltech101 from ``<data_dir>/NCALTECH101/Caltech101/<class>/*.bin``: labels are the class folders
    in sorted order; no official split, so the fixed 9:1 split within each class (:func:`stratified_split`)."""
    (files,) = locate(data_dir, NCALTECH101, download)
    classes = sorted({name for name, _ in files})
    if len(classes) != NCALTECH101_CLASSES:
        raise DatasetNotFoundError(
            f"N-Caltech101 in {data_dir / NCALTECH101.folder / 'Caltech101'} has {len(classes)} class folders, "
            f"expected {NCALTECH101_CLASSES}; re-extract {NCALTECH101.parts[0].archive} from {NCALTECH101.parts[0].url}"
        )
    label = {name: i for i, name in enumerate(classes)}
    source = Recordings([path for _, path in files], [label[name] for name, _ in files], ncaltech_columns)
    rule = "fixed: the first 9/10 of each class in file order train (no official split)"
    return _framed("ncaltech101", source, NCALTECH101_SENSOR, options, data_dir, None, rule)
