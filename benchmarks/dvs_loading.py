"""DVS-CIFAR10 loading speed, side by side with tonic, in one process on the same recordings.

    python benchmarks/dvs_loading.py                       # synthetic recordings in the real AEDAT4 format
    python benchmarks/dvs_loading.py --data-dir datasets   # your extracted CIFAR10DVS

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

from bntt_snntorch.data import DataOptions, build_datasets
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


def tonic_bare(paths, to_frame) -> tuple[float, np.ndarray]:
    """Recordings/s of tonic's reader + ToFrame over ``paths`` in this process, and the last frames."""
    start = time.perf_counter()
    for path in paths:
        events = read_aedat4(str(path))
        events.dtype.names = ["t", "x", "y", "p"]
        frames = to_frame(events)
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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="folder holding CIFAR10DVS/ (default: synthetic recordings)")
    p.add_argument("--recordings", type=int, default=200, help="synthetic recordings (a multiple of 10)")
    p.add_argument("--events", type=int, default=250_000, help="events per synthetic recording")
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--dvs-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="cached epochs timed (median reported)")
    p.add_argument("--repeats", type=int, default=3, help="alternated runs of tonic bare and our first pass (median)")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="dvs-bench-"))
    try:
        if args.data_dir:
            shutil.copytree(Path(args.data_dir) / "CIFAR10DVS", tmp / "CIFAR10DVS", symlinks=True)
            total_events = None
        else:
            total_events = write_recordings(tmp, args.recordings // len(CLASSES), args.events)
        CIFAR10DVS.min_recordings = min(CIFAR10DVS.min_recordings, len(list(tmp.glob("CIFAR10DVS/*/*.aedat4"))))
        paths = CIFAR10DVS(str(tmp)).data
        n = len(paths)
        to_frame = frame_transform(CIFAR10DVS.sensor_size, args.dvs_size, args.T)
        os.sync()  # the recordings just written: their write-back must not run inside a timed row
        rows = {}
        options = DataOptions(num_steps=args.T, size=args.dvs_size, num_workers=0, progress=False, augment=())
        tonic_rates, our_rates = [], []
        for _ in range(args.repeats):  # alternated, so a slower moment of the machine hits both sides
            rate, tonic_last = tonic_bare(paths, to_frame)
            tonic_rates.append(rate)
            shutil.rmtree(tmp / "frame-cache", ignore_errors=True)
            start = time.perf_counter()
            train, test, _ = build_datasets("cifar10-dvs", tmp, options=options)
            our_rates.append(n / (time.perf_counter() - start))
        rows["tonic_bare_per_s"] = statistics.median(tonic_rates)
        rows["ours_first_pass_per_s"] = statistics.median(our_rates)
        rows["tonic_cached_first_pass_per_s"], rows["tonic_cached_epoch_per_s"] = tonic_cached(
            tmp, to_frame, tmp / "tonic-cache"
        )
        ours_last = np.load(train.folder / "frames.npy", mmap_mode="r")[n - 1]  # the cache's last row
        if not np.array_equal(ours_last, tonic_last.astype(np.int16)):
            raise AssertionError("our frames differ from tonic's ToFrame")
        for workers in (0, 2):
            rates = [timed_epoch(train, args.batch_size, workers) for _ in range(args.epochs)]
            rows[f"ours_cached_per_s_workers{workers}"] = statistics.median(rates)
        augmented = build_datasets(
            "cifar10-dvs", tmp, options=dataclasses.replace(options, augment=("flip", "translate"))
        )[0]
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
        "recordings": n,
        "events_per_recording": None if args.data_dir else args.events,
        "T": args.T,
        "dvs_size": args.dvs_size,
        "batch_size": args.batch_size,
    }
    ratio = rows["ours_first_pass_per_s"] / rows["tonic_bare_per_s"]
    result = {**meta, **{k: round(v, 1) for k, v in rows.items()}, "first_pass_over_tonic_bare": round(ratio, 2)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"dvs_loading-{device}-{args.dvs_size}px.json").write_text(json.dumps(result, indent=2) + "\n")
    per_events = (lambda r: f" ({r * args.events / 1e6:.1f} M events/s)") if total_events else (lambda r: "")
    lines = [
        f"# DVS-CIFAR10 loading, {device}",
        "",
        f"`{meta['command']}` — {meta['cpu_capability']} CPU, torch {meta['torch']}, tonic {meta['tonic']}, "
        f"{n} recordings"
        + (f" of {args.events:,} events (synthetic, real AEDAT4 format)" if not args.data_dir else "")
        + f", T={args.T}, frames {args.dvs_size}x{args.dvs_size}, batch {args.batch_size}; every row in one "
        "process; tonic bare and our first pass alternated, median of --repeats.",
        "",
        "| stage | recordings/s |",
        "|---|---|",
        f"| tonic: bare decode + ToFrame | {rows['tonic_bare_per_s']:,.1f}{per_events(rows['tonic_bare_per_s'])} |",
        f"| tonic: DiskCachedDataset first pass | {rows['tonic_cached_first_pass_per_s']:,.1f} |",
        f"| tonic: DiskCachedDataset cached pass | {rows['tonic_cached_epoch_per_s']:,.0f} |",
        f"| ours: first pass (decode + bincount frames + cache write) | {rows['ours_first_pass_per_s']:,.1f}"
        f"{per_events(rows['ours_first_pass_per_s'])} |",
        f"| ours: cached epoch, 0 loader workers | {rows['ours_cached_per_s_workers0']:,.0f} |",
        f"| ours: cached epoch, 2 loader workers | {rows['ours_cached_per_s_workers2']:,.0f} |",
        f"| ours: cached epoch, 0 workers, flip + translate | {rows['ours_cached_per_s_workers0_augmented']:,.0f} |",
        "",
        f"First pass: {ratio:.2f}x tonic's bare decode + ToFrame (frames checked equal to tonic's).",
    ]
    (RESULTS / f"dvs_loading-{device}-{args.dvs_size}px.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
