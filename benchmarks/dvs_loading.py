"""Event data loading speed, side by side with tonic, in one process on the same recordings.

    python benchmarks/dvs_loading.py                       # synthetic recordings in the real AEDAT4 format
    python benchmarks/dvs_loading.py --data-dir datasets   # your extracted CIFAR10DVS
    python benchmarks/dvs_loading.py --format nmnist       # small recordings: N-MNIST's 5-byte ATIS .bin files

``--format nmnist`` writes ``--recordings`` N-MNIST files (``--events`` events each over 300 ms on the
34x34 sensor, no timestamp-overflow records, as N-MNIST's 300 ms saccades need none; the set's
60,000 / 10,000 completeness check lowered to them) and compares tonic's ``read_mnist_file`` + ``ToFrame``
with our first pass and cached epochs of ``--dataset nmnist`` (the case where per-file costs dominate).

Without ``--data-dir`` it writes ``--recordings`` recordings (default 200, 20 per class, ``--events``
events each over 1.3 s on the 128x128 sensor; the data set's 1,000-file check is lowered to that
count) to a temporary folder. Rows, all in this process (per core): tonic's bare decode + ``ToFrame``
(``tonic.io.read_aedat4`` then ``ToFrame(n_time_bins=T)``), tonic's ``DiskCachedDataset`` first pass
and cached epoch, our first pass (decode + binning + cache write, ``num_workers=0``) and our cached
epochs; recordings/s and events/s. The frames of both sides are checked equal. Writes
``benchmarks/results/dvs_loading-<device>.md`` / ``.json`` with the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tonic
import torch
from tonic.io import read_aedat4
from torch.utils.data import DataLoader

from bntt_snntorch.data import DataOptions, build_datasets, event_sets
from bntt_snntorch.data.aedat4 import write_aedat4
from bntt_snntorch.data.events import CIFAR10DVS, frame_transform

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = list(CIFAR10DVS.classes)


def write_recordings(root: Path, per_class: int, events: int, seed: int = 0) -> int:
    """``per_class`` recordings per class of ``events`` events each; returns the total event count."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool)])
    for name in CLASSES:
        folder = root / "CIFAR10DVS" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            ev = np.zeros(events, dtype)
            ev["t"] = np.sort(rng.integers(0, 1_300_000, events))
            ev["x"], ev["y"] = rng.integers(0, 128, events), rng.integers(0, 128, events)
            ev["p"] = rng.random(events) < 0.5
            write_aedat4(folder / f"cifar10_{name}_{i}.aedat4", ev)
    return per_class * len(CLASSES) * events


def write_nmnist_recordings(root: Path, per_class: int, events: int, seed: int = 0) -> list[str]:
    """``per_class`` N-MNIST ``.bin`` recordings per digit under ``root/NMNIST/Train`` and a tenth of that
    under ``Test`` (5-byte ATIS records, times over 300 ms); lowers the set's completeness check to them."""
    rng = np.random.default_rng(seed)
    counts = (per_class, max(1, per_class // 10))
    for split, count in zip(("Train", "Test"), counts):
        for digit in range(10):
            folder = root / "NMNIST" / split / str(digit)
            folder.mkdir(parents=True)
            for i in range(count):
                records = np.zeros((events, 5), np.uint8)
                times = np.sort(rng.integers(0, 300_000, events))
                records[:, 0], records[:, 1] = rng.integers(0, 34, events), rng.integers(0, 34, events)
                records[:, 2] = ((rng.random(events) < 0.5) << 7) | (times >> 16)
                records[:, 3], records[:, 4] = (times >> 8) & 255, times & 255
                (folder / f"{i:05d}.bin").write_bytes(records.tobytes())
    parts = tuple(dataclasses.replace(part, count=10 * n) for part, n in zip(event_sets.NMNIST.parts, counts))
    event_sets.NMNIST = dataclasses.replace(event_sets.NMNIST, parts=parts)
    return sorted(str(p) for p in root.glob("NMNIST/*/*/*.bin"))


def timed_epoch(dataset, batch_size: int, workers: int) -> float:
    """Samples/s of one shuffled epoch through a DataLoader."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=False, drop_last=False
    )
    start = time.perf_counter()
    n = 0
    for frames, _ in loader:
        n += len(frames)
    return n / (time.perf_counter() - start)


def read_cifar10_dvs(path) -> np.ndarray:
    """tonic's CIFAR10DVS reader (``aedat``'s), its fields named as the data set names them."""
    events = read_aedat4(str(path))
    events.dtype.names = ["t", "x", "y", "p"]
    return events


def read_nmnist(path) -> np.ndarray:
    """tonic's N-MNIST reader, as ``tonic.datasets.NMNIST`` calls it."""
    return tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)


def tonic_bare(paths, read, to_frame) -> tuple[float, np.ndarray]:
    """Recordings/s of tonic's reader + ToFrame over ``paths`` in this process, and the frames by path."""
    start = time.perf_counter()
    frames = {}
    for path in paths:
        frames[str(path)] = to_frame(read(path))
    return len(paths) / (time.perf_counter() - start), frames


def tonic_cached(root: Path, to_frame, cache: Path) -> tuple[float, float]:
    """Recordings/s of tonic's DiskCachedDataset: its first pass (decode + ToFrame + HDF5 write) and a
    second pass (cached reads)."""
    dataset = tonic.DiskCachedDataset(CIFAR10DVS(str(root), transform=to_frame), cache_path=str(cache))
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        rates.append(len(dataset) / (time.perf_counter() - start))
    return rates[0], rates[1]


FORMATS = {  # --format: data set, tonic's reader, sensor, title, default --events / --recordings / --T / --dvs-size
    "aedat4": ("cifar10-dvs", read_cifar10_dvs, CIFAR10DVS.sensor_size, "DVS-CIFAR10", 250_000, 200, 20, 128),
    "nmnist": ("nmnist", read_nmnist, event_sets.NMNIST_SENSOR, "N-MNIST", 4_000, 2_000, 10, 34),
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=sorted(FORMATS), default="aedat4", help="recordings: DVS-CIFAR10 or N-MNIST")
    p.add_argument("--data-dir", help="folder holding CIFAR10DVS/ (default: synthetic recordings)")
    p.add_argument("--recordings", type=int, help="synthetic recordings, a multiple of 10 (aedat4: 200, nmnist: 2000)")
    p.add_argument("--events", type=int, help="events per synthetic recording (aedat4: 250,000; nmnist: 4,000)")
    p.add_argument("--T", type=int, help="frames per recording (aedat4: 20, nmnist: 10)")
    p.add_argument("--dvs-size", type=int, help="frame size (aedat4: 128, nmnist: 34)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="cached epochs timed (median reported)")
    p.add_argument("--repeats", type=int, default=3, help="alternated runs of tonic bare and our first pass (median)")
    args = p.parse_args(argv)
    dataset, read, sensor, title, events, recordings, steps, size = FORMATS[args.format]
    args.events, args.recordings = args.events or events, args.recordings or recordings
    args.T, args.dvs_size = args.T or steps, args.dvs_size or size

    tmp = Path(tempfile.mkdtemp(prefix="dvs-bench-"))
    try:
        if args.format == "nmnist":
            paths = write_nmnist_recordings(tmp, args.recordings // 11, args.events)
            total_events = len(paths) * args.events
        else:
            if args.data_dir:
                shutil.copytree(Path(args.data_dir) / "CIFAR10DVS", tmp / "CIFAR10DVS", symlinks=True)
                total_events = None
            else:
                total_events = write_recordings(tmp, args.recordings // len(CLASSES), args.events)
            CIFAR10DVS.min_recordings = min(CIFAR10DVS.min_recordings, len(list(tmp.glob("CIFAR10DVS/*/*.aedat4"))))
            paths = CIFAR10DVS(str(tmp)).data
        n = len(paths)
        to_frame = frame_transform(sensor, args.dvs_size, args.T)
        os.sync()  # the recordings just written: their write-back must not run inside a timed row
        rows = {}
        options = DataOptions(num_steps=args.T, size=args.dvs_size, num_workers=0, progress=False, augment=())
        tonic_rates, our_rates = [], []
        for _ in range(args.repeats):  # alternated, so a slower moment of the machine hits both sides
            rate, tonic_frames = tonic_bare(paths, read, to_frame)
            tonic_rates.append(rate)
            shutil.rmtree(tmp / "frame-cache", ignore_errors=True)
            start = time.perf_counter()
            train, test, _ = build_datasets(dataset, tmp, options=options)
            our_rates.append(n / (time.perf_counter() - start))
        rows["tonic_bare_per_s"] = statistics.median(tonic_rates)
        rows["ours_first_pass_per_s"] = statistics.median(our_rates)
        if args.format == "aedat4":
            rows["tonic_cached_first_pass_per_s"], rows["tonic_cached_epoch_per_s"] = tonic_cached(
                tmp, to_frame, tmp / "tonic-cache"
            )
        cache = np.load(train.folder / "frames.npy", mmap_mode="r")
        for part in (train, test):  # every recording's frames, checked equal to tonic's
            for i in part.indices:
                if not np.array_equal(cache[i], tonic_frames[str(part.recordings[i])].astype(np.int16)):
                    raise AssertionError(f"our frames of {part.recordings[i]} differ from tonic's ToFrame")
        for workers in (0, 2):
            rates = [timed_epoch(train, args.batch_size, workers) for _ in range(args.epochs)]
            rows[f"ours_cached_per_s_workers{workers}"] = statistics.median(rates)
        augmented = build_datasets(dataset, tmp, options=dataclasses.replace(options, augment=("flip", "translate")))[0]
        rows["ours_cached_per_s_workers0_augmented"] = statistics.median(
            timed_epoch(augmented, args.batch_size, 0) for _ in range(args.epochs)
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    device = f"cpu-{os.cpu_count()}cores"
    meta = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "tonic": tonic.__version__,
        "python": platform.python_version(),
        "command": "python benchmarks/dvs_loading.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "format": args.format,
        "recordings": n,
        "events_per_recording": None if args.data_dir else args.events,
        "T": args.T,
        "dvs_size": args.dvs_size,
        "batch_size": args.batch_size,
    }
    ratio = rows["ours_first_pass_per_s"] / rows["tonic_bare_per_s"]
    result = {**meta, **{k: round(v, 1) for k, v in rows.items()}, "first_pass_over_tonic_bare": round(ratio, 2)}
    RESULTS.mkdir(exist_ok=True)
    stem = f"dvs_loading-{'' if args.format == 'aedat4' else args.format + '-'}{device}-{args.dvs_size}px"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    per_events = (lambda r: f" ({r * args.events / 1e6:.1f} M events/s)") if total_events else (lambda r: "")
    reader = "tonic.io.read_aedat4" if args.format == "aedat4" else "tonic.io.read_mnist_file"
    file_format = "real AEDAT4 format" if args.format == "aedat4" else "real N-MNIST .bin format"
    lines = [
        f"# {title} loading, {device}",
        "",
        f"`{meta['command']}` — {meta['cpu_capability']} CPU, torch {meta['torch']}, tonic {meta['tonic']}, "
        f"{n} recordings"
        + (f" of {args.events:,} events (synthetic, {file_format})" if not args.data_dir else "")
        + f", T={args.T}, frames {args.dvs_size}x{args.dvs_size}, batch {args.batch_size}; every row in one "
        "process; tonic bare and our first pass alternated, median of --repeats.",
        "",
        "| stage | recordings/s |",
        "|---|---|",
        f"| tonic: bare decode + ToFrame (`{reader}`) | {rows['tonic_bare_per_s']:,.1f}"
        f"{per_events(rows['tonic_bare_per_s'])} |",
    ]
    if args.format == "aedat4":
        lines += [
            f"| tonic: DiskCachedDataset first pass | {rows['tonic_cached_first_pass_per_s']:,.1f} |",
            f"| tonic: DiskCachedDataset cached pass | {rows['tonic_cached_epoch_per_s']:,.0f} |",
        ]
    lines += [
        f"| ours: first pass (listing, decode, bincount frames, cache write) | {rows['ours_first_pass_per_s']:,.1f}"
        f"{per_events(rows['ours_first_pass_per_s'])} |",
        f"| ours: cached epoch, 0 loader workers | {rows['ours_cached_per_s_workers0']:,.0f} |",
        f"| ours: cached epoch, 2 loader workers | {rows['ours_cached_per_s_workers2']:,.0f} |",
        f"| ours: cached epoch, 0 workers, flip + translate | {rows['ours_cached_per_s_workers0_augmented']:,.0f} |",
        "",
        f"First pass: {ratio:.2f}x tonic's bare decode + ToFrame, per core (every recording's frames checked equal "
        "to tonic's).",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
