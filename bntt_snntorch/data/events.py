"""Event data sets as frames: DVS-CIFAR10 through tonic, a fixed 9:1 split, and a disk frame cache.

Recordings are decoded by tonic's reader (``aedat``: the fastest reader measured here that reads
them, ``benchmarks/dvs_loading.py``) and binned into event counts ``(T, 2, size, size)`` equal to
``tonic.transforms.ToFrame(n_time_bins=T)`` after ``Downsample`` to ``size`` (:func:`bin_events`:
tonic's own time slices, then one ``np.bincount`` instead of ``np.add.at`` per slice). The first
pass writes every recording's frames into one array under ``<data-dir>/frame-cache/<key>/``,
where ``key`` hashes everything that changes them (data set, recordings, T, size, the tonic
transform they equal and tonic's version); later epochs read that array.
Training augmentation (left-right flip, translation) runs on the cached
frames: it equals flipping / shifting the events before binning (tested).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tonic
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..files import atomic_write
from .registry import CorruptRecordingError, DataOptions, DatasetInfo, DatasetNotFoundError, register_dataset

CIFAR10_DVS_URL = "https://figshare.com/ndownloader/files/38023437"
CACHE_FORMAT = 2  # bump when the cache layout changes


class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    """tonic's CIFAR10DVS that accepts the extracted folder alone.

    tonic's existence check wants ``CIFAR10DVS.zip`` beside the extracted
    recordings (and downloads again without it); here the 1,000 ``.aedat4``
    files tonic requires are enough, so the zip may be deleted. Files are
    listed in a machine-independent order (class, then natural file-name order).
    """

    min_recordings = 1000  # tonic's own threshold for "extracted"

    def _check_exists(self) -> bool:
        return self._folder_contains_at_least_n_files_of_type(self.min_recordings, ".aedat4")

    def __init__(self, save_to: str, transform=None, target_transform=None, transforms=None):
        """tonic's arguments, in tonic's order, positional or keyword."""
        super().__init__(save_to, transform, target_transform, transforms)
        order = sorted(range(len(self.data)), key=lambda i: (self.targets[i], natural_key(Path(self.data[i]).name)))
        self.data = [self.data[i] for i in order]
        self.targets = [self.targets[i] for i in order]


def natural_key(name: str) -> tuple:
    """``cifar10_cat_10`` after ``cifar10_cat_9``: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def stratified_split(targets, test_fraction: float = 0.1) -> tuple[list[int], list[int]]:
    """The fixed split: within each class, in the data set's order, the first
    ``1 - test_fraction`` of the recordings train and the rest test (SpikingJelly's
    convention). No randomness: the same files on every machine."""
    targets = np.asarray(targets)
    train, test = [], []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label).tolist()
        n_train = int(round(len(members) * (1.0 - test_fraction)))
        train += members[:n_train]
        test += members[n_train:]
    return sorted(train), sorted(test)


def frame_transform(sensor_size: tuple[int, int, int], size: int, num_steps: int) -> Callable:
    """tonic transform: events -> int16 counts ``(T, 2, size, size)`` (downsampled if ``size`` differs)."""
    steps = []
    if size != sensor_size[0]:
        steps.append(tonic.transforms.Downsample(spatial_factor=size / sensor_size[0]))
    steps.append(tonic.transforms.ToFrame(sensor_size=(size, size, sensor_size[2]), n_time_bins=num_steps))
    return tonic.transforms.Compose(steps)


class BadEvents(ValueError):
    """A recording's events that cannot be binned as the data set's sensor says (tonic refuses them too)."""


#: What the decoders raise for a recording they cannot read (aedat's reader: RuntimeError, "failed to fill whole
#: buffer" or "wrong magic number"; the file system: OSError; numpy and tonic: ValueError, EOFError), and the
#: binning for events that do not fit the sensor. Any other error (a bug) propagates.
UNREADABLE_RECORDING = (RuntimeError, OSError, ValueError, EOFError)


def bin_events(events: np.ndarray, num_steps: int, size: int, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """Event counts, int16 ``(T, P, size, size)``, equal to tonic's ``Downsample(spatial_factor=size / W)``
    then ``ToFrame(sensor_size=(size, size, P), n_time_bins=T)`` to the count: tonic's own time slices
    (``SliceByTimeBins``: T windows of ``(t_last - t_first) // T``, the remainder dropped), coordinates
    scaled and truncated as tonic does, and one ``np.bincount`` over
    ``((t_bin * P + p) * size + y) * size + x`` where tonic runs ``np.add.at`` once per slice.
    ``events``: a structured array with fields t, x, y, p, or columns indexed by those names
    (:class:`~.event_readers.EventColumns`); ``sensor_size``: the sensor's (W, H, P)."""
    polarities = sensor_size[2]
    shape = (num_steps, polarities, size, size)
    if len(events["t"]) == 0:
        return np.zeros(shape, np.int16)
    lo, hi = _time_slices(events, num_steps)
    if (lo[1:] == hi[:-1]).all():  # the windows tile one range
        chosen = slice(lo[0], hi[-1])
    else:
        chosen = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])
    factor = size / sensor_size[0]
    x, y = events["x"][chosen], events["y"][chosen]
    if factor != 1:  # tonic multiplies and stores back into the integer field: truncation
        x, y = (x * factor).astype(x.dtype), (y * factor).astype(y.dtype)
    if int(x.max(initial=0)) >= size or int(y.max(initial=0)) >= size:
        raise BadEvents(f"an event lies outside the {size}x{size} frame (tonic: IndexError)")
    if polarities == 1 and np.unique(events["p"]).size > 1:
        raise BadEvents("single polarity sensor, but the events have both polarities (as tonic says)")
    # the flat index ((t_bin * P + p) * size + y) * size + x, built in place in int32 (T*P*size^2 < 2^31)
    flat = np.repeat(np.arange(0, num_steps * polarities, polarities, dtype=np.int32), hi - lo)
    if polarities > 1:
        flat += events["p"][chosen]
    flat *= size
    flat += y
    flat *= size
    flat += x
    return np.bincount(flat, minlength=int(np.prod(shape))).astype(np.int16).reshape(shape)  # wraps as int16 does


def _time_slices(events, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds ``(lo, hi)``, each ``(T,)``, of tonic's ``SliceByTimeBins(bin_count=T)`` windows,
    computed with tonic's arithmetic. For integer times below 2^53 tonic's float window edges
    ``t_0 + k * window`` are whole numbers held exactly, so they are searched as integers, once each
    (window k ends where window k + 1 starts, on sorted or unsorted times alike)."""
    times = events["t"]
    if np.issubdtype(times.dtype, np.integer):
        first, last = int(times[0]), int(times[-1])
        window = (last - first) // num_steps  # tonic: floor division (then a float, exact below 2^53)
        if 0 <= first and first + (num_steps + 1) * abs(window) < 2**53:
            bounds = np.searchsorted(times, first + window * np.arange(num_steps + 1))
            return bounds[:-1], bounds[1:]
    slices = np.array(tonic.slicers.SliceByTimeBins(bin_count=num_steps, overlap=0.0).get_slice_metadata(events, None))
    return slices[:, 0], slices[:, 1]


# ----------------------------------------------------------------------------- the cache
@dataclass(frozen=True)
class CacheSpec:
    """What the cached frames depend on; its hash names the cache folder."""

    dataset: str
    num_steps: int
    size: int
    transform: str
    recordings: str  # digest of the recording list (or of the simulation parameters)

    def key(self) -> str:
        text = json.dumps({**self.__dict__, "tonic": tonic.__version__, "format": CACHE_FORMAT}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def recordings_digest(paths) -> str:
    """Names, sizes and modification times of the recordings (a changed file changes the cache key)."""
    h = hashlib.sha1()
    for p in map(os.fspath, paths):
        st = os.stat(p)
        folder, name = os.path.split(p)
        h.update(f"{os.path.basename(folder)}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


class _FrameBuilder(Dataset):
    """Item ``n``: ``(i, frames of recording i or None, error message or "")`` for the ``n``-th index,
    so a bad file is reported by the main process (which writes the frames into the cache)."""

    def __init__(self, source, frames_of: Callable[[np.ndarray], np.ndarray], indices):
        self.source, self.frames_of, self.indices = source, frames_of, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, n: int):
        i = self.indices[n]
        try:
            events, _ = self.source[i]  # the decoder (:data:`UNREADABLE_RECORDING`)
        except UNREADABLE_RECORDING as err:
            return i, None, self._error(i, err)
        try:
            return i, self.frames_of(events), ""
        except BadEvents as err:
            return i, None, self._error(i, err)

    def _error(self, i: int, err: BaseException) -> str:
        name = self.source.data[i] if hasattr(self.source, "data") else f"recording {i}"
        return f"{name}: {type(err).__name__}: {err}".splitlines()[0]


SAVE_DONE_EVERY = 64  # recordings between saves of the first pass's progress (a killed pass resumes there)
SAVE_DONE_SECONDS = 1.0  # ... and at least this long: small recordings are framed faster than a save takes


class _RowFile:
    """The rows of an int16 ``.npy`` file of shape ``(N, *row_shape)``, created (sparse) unless ``resume``,
    written one row at a time with ``pwrite``: a row lands in the page cache in one call, where a
    memory-mapped row takes a page fault per 4 KiB page of a fresh file (74 us against 8 us for a
    46 KB row here)."""

    def __init__(self, path: Path, shape: tuple[int, ...], resume: bool):
        mapped = np.lib.format.open_memmap(path, mode="r+" if resume else "w+", dtype=np.int16, shape=shape)
        if mapped.shape != shape:
            raise ValueError(f"{path} holds frames of shape {mapped.shape}, expected {shape}")
        self.offset, mapped = mapped.offset, None  # where row 0 starts; then unmapped
        self.row_shape, self.row_bytes = shape[1:], int(np.prod(shape[1:])) * 2
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, i: int, rows) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.int16)
        if rows.shape != self.row_shape:
            raise ValueError(f"frames of shape {rows.shape}, expected {self.row_shape}")
        os.pwrite(self.fd, rows, self.offset + i * self.row_bytes)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _unconverted(item):
    """The loader's per-item hook that leaves numpy frames as they are (no tensor round trip)."""
    return item


def build_frame_cache(
    source,
    spec: CacheSpec,
    cache_root: Path,
    frames_of: Callable,
    frame_shape: tuple[int, ...],
    num_workers: int = 0,
    skip_corrupt: bool = False,
    progress: bool = True,
) -> tuple[Path, list[int]]:
    """Frames of every recording of ``source`` in ``cache_root/<spec.key()>/frames.npy``
    (int16 ``(N, *frame_shape)``, row ``i`` = recording ``i``); returns the folder and the usable
    indices. Recordings are framed in parallel (``num_workers``; with none, in this process without a
    loader) and each written straight into its row of one file; which rows are done is saved
    (atomically, after the rows are synced) every :data:`SAVE_DONE_EVERY` recordings once
    :data:`SAVE_DONE_SECONDS` have passed since the last save, so a killed first pass resumes where it
    stopped, at most about a second of work before. ``manifest.json``, written last, marks the cache
    complete. A recording that cannot be decoded raises :class:`CorruptRecordingError` naming it, or
    with ``skip_corrupt`` is left out with a warning."""
    folder = cache_root / spec.key()
    manifest = folder / "manifest.json"
    if manifest.exists() and (folder / "frames.npy").exists():
        return folder, json.loads(manifest.read_text())["indices"]
    folder.mkdir(parents=True, exist_ok=True)
    tmp, done_path = folder / ".frames.tmp.npy", folder / "done.npy"
    resuming = tmp.exists() and done_path.exists()
    shape = (len(source), *frame_shape)
    frames = _RowFile(tmp, shape, resuming)
    done = np.load(done_path) if resuming else np.zeros(len(source), bool)
    last_save = time.monotonic()

    def save_done() -> None:
        nonlocal last_save
        frames.sync()
        atomic_write(done_path, lambda f: np.save(f, done))
        last_save = time.monotonic()

    builder = _FrameBuilder(source, frames_of, np.flatnonzero(~done))
    workers = min(num_workers, os.cpu_count() or 1)
    if workers:
        items = DataLoader(builder, batch_size=None, num_workers=workers, collate_fn=_unconverted)
    else:  # a loader's per-item cost is a small recording's whole decode
        items = (builder[n] for n in range(len(builder)))
    bad = []
    bar = tqdm(items, total=len(builder), desc=f"caching {spec.dataset} frames", disable=not progress, leave=False)
    try:
        for n, (i, rows, error) in enumerate(bar, 1):
            if error:
                if not skip_corrupt:
                    save_done()
                    raise CorruptRecordingError(f"cannot read {error}; re-extract or delete it, or pass --skip-corrupt")
                bad.append(error)
            else:
                frames.write(i, rows)
                done[i] = True
            if n % SAVE_DONE_EVERY == 0 and time.monotonic() - last_save >= SAVE_DONE_SECONDS:
                save_done()
        frames.sync()
    finally:
        frames.close()
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable recording(s), first: {bad[0]}", stacklevel=2)
    indices = np.flatnonzero(done).tolist()
    if not indices:
        raise CorruptRecordingError(f"no recording of {spec.dataset} could be read")
    os.replace(tmp, folder / "frames.npy")
    content = {"spec": spec.__dict__, "tonic": tonic.__version__, "shape": list(shape), "indices": indices}
    atomic_write(manifest, lambda f: f.write(json.dumps({**content, "skipped": bad}, indent=1).encode()))
    done_path.unlink(missing_ok=True)
    return folder, indices


# ----------------------------------------------------------------------------- frames as a data set
class FrameAugment:
    """Training augmentation of frames ``(T, P, H, W)``: left-right flip with probability
    ``flip_p``, and a translation by up to ``max_shift`` pixels in x and y (zero fill), done in
    one copy. Equal to flipping / shifting the events before binning when no event leaves the
    sensor (tested). The draws for a recording come from ``(seed, epoch, index)`` (``epoch`` set by
    :meth:`CachedFrames.set_epoch`, which the trainer calls before each epoch), so they depend on nothing
    else: not the loader's workers, nor the batches a resumed run draws again and skips."""

    def __init__(self, flip_p: float = 0.5, max_shift: int = 0, seed: int = 0):
        self.flip_p, self.max_shift, self.seed, self.epoch = flip_p, max_shift, seed, 0

    def __call__(self, frames: np.ndarray, index: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        flip = rng.random() < self.flip_p
        dx, dy = rng.integers(-self.max_shift, self.max_shift + 1, 2).tolist() if self.max_shift else (0, 0)
        return translate(frames[..., ::-1] if flip else frames, dx, dy)

    def __repr__(self) -> str:
        return f"FrameAugment(flip_p={self.flip_p}, max_shift={self.max_shift}, seed={self.seed})"


def translate(frames: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """A copy of ``(..., H, W)`` shifted by ``dx`` columns and ``dy`` rows, filled with zeros."""
    out = np.zeros(frames.shape, frames.dtype)
    H, W = frames.shape[-2:]
    src_y, dst_y = slice(max(0, -dy), min(H, H - dy)), slice(max(0, dy), min(H, H + dy))
    src_x, dst_x = slice(max(0, -dx), min(W, W - dx)), slice(max(0, dx), min(W, W + dx))
    out[..., dst_y, dst_x] = frames[..., src_y, src_x]
    return out


class CachedFrames(Dataset):
    """``(frames (T, P, H, W) int16 event counts, label)`` of ``indices``, read from a frame cache's
    ``frames.npy`` (memory-mapped, opened lazily in each loader process). The counts stay int16
    until :func:`bntt_snntorch.encoding.events` makes them float on the training device.
    ``recordings``: the recording of each cache row (its path), where the source lists them."""

    def __init__(self, folder: Path, indices, targets, augment: FrameAugment | None = None, recordings=None):
        self.folder, self.indices, self.targets, self.augment = folder, list(indices), list(targets), augment
        self.recordings = recordings
        self._frames = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        return {**self.__dict__, "_frames": None}  # workers map the file themselves

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation draws :meth:`__getitem__` makes (nothing without augmentation)."""
        if self.augment is not None:
            self.augment.epoch = epoch

    def __getitem__(self, n: int):
        if self._frames is None:
            self._frames = np.load(self.folder / "frames.npy", mmap_mode="r")
        i = self.indices[n]
        row = self._frames[i]  # a view into the mapped file
        frames = np.array(row) if self.augment is None else self.augment(row, i)
        return torch.from_numpy(frames), self.targets[i]


def _augment(options: DataOptions, size: int) -> FrameAugment | None:
    augment = ("flip", "translate") if options.augment is None else options.augment
    if not augment:
        return None
    shift = max(1, size // 16) if "translate" in augment else 0
    return FrameAugment(0.5 if "flip" in augment else 0.0, shift, options.seed)


def framed_split(
    source, name: str, sensor_size, options: DataOptions, cache_root: Path, train_idx, test_idx, recordings: str
):
    """Train / test :class:`CachedFrames` of ``source`` (recordings -> frames via the cache)."""
    size = options.size or sensor_size[0]
    transform = frame_transform(sensor_size, size, options.num_steps)
    spec = CacheSpec(name, options.num_steps, size, repr(transform), recordings)

    frames_of = functools.partial(bin_events, num_steps=options.num_steps, size=size, sensor_size=sensor_size)
    frame_shape = (options.num_steps, sensor_size[2], size, size)
    folder, usable = build_frame_cache(
        source, spec, cache_root, frames_of, frame_shape, options.num_workers, options.skip_corrupt, options.progress
    )
    usable = set(usable)
    targets, names = list(source.targets), getattr(source, "data", None)
    train = CachedFrames(folder, [i for i in train_idx if i in usable], targets, _augment(options, size), names)
    test = CachedFrames(folder, [i for i in test_idx if i in usable], targets, recordings=names)
    return train, test


@register_dataset("cifar10-dvs", DatasetInfo("cifar10-dvs", 10, 2, 128, events=True))
def cifar10_dvs(data_dir: Path, download: bool, options: DataOptions):
    """DVS-CIFAR10 from ``<data_dir>/CIFAR10DVS/<class>/*.aedat4``: fixed 9:1 split, cached frames."""
    root = data_dir / "CIFAR10DVS"
    n_files = len(list(root.glob("*/*.aedat4"))) if root.is_dir() else 0
    if n_files < CIFAR10DVS.min_recordings and not download:
        found = f"only {n_files} recordings found in {root}" if n_files else f"expected the folder {root}"
        raise DatasetNotFoundError(
            f"CIFAR10-DVS not found: {found} (10 class folders of .aedat4 files); download CIFAR10DVS.zip from "
            f"{CIFAR10_DVS_URL}, unzip it and the 10 class zips into {root}, or pass --download"
        )
    source = CIFAR10DVS(str(data_dir))
    train_idx, test_idx = stratified_split(source.targets)
    return framed_split(
        source,
        "cifar10-dvs",
        CIFAR10DVS.sensor_size,
        options,
        data_dir / "frame-cache",
        train_idx,
        test_idx,
        recordings_digest(source.data),
    )
