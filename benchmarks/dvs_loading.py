"""DVS-CIFAR10 loading speed: first pass (decode AEDAT4 + bin frames + write the cache) and cached epochs.

    python benchmarks/dvs_loading.py                       # synthetic recordings in the real AEDAT4 format
    python benchmarks/dvs_loading.py --data-dir datasets   # your extracted CIFAR10DVS

Without ``--data-dir`` it writes 1,000 recordings (100 per class, ``--events``
events each over 1.3 s on the 128x128 sensor) to a temporary folder. Reports
samples/s (and events/s for the first pass) and writes
``benchmarks/results/dvs_loading-<device>.md`` / ``.json`` with the command.
"""

from __future__ import annotations

import argparse
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
from torch.utils.data import DataLoader

from bntt_snntorch.data import DataOptions, build_datasets
from bntt_snntorch.data.aedat4 import write_aedat4
from bntt_snntorch.data.events import CIFAR10DVS

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
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=False, drop_last=False
    )
    start = time.perf_counter()
    n = 0
    for frames, _ in loader:
        n += len(frames)
    return n / (time.perf_counter() - start)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="folder holding CIFAR10DVS/ (default: synthetic recordings)")
    p.add_argument("--events", type=int, default=20_000, help="events per synthetic recording")
    p.add_argument("--T", type=int, default=20)
    p.add_argument("--dvs-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="processes for the first pass")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3, help="cached epochs timed (median reported)")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="dvs-bench-"))
    try:
        if args.data_dir:
            shutil.copytree(Path(args.data_dir) / "CIFAR10DVS", tmp / "CIFAR10DVS", symlinks=True)
            total_events = None
        else:
            total_events = write_recordings(tmp, 100, args.events)
        options = DataOptions(num_steps=args.T, size=args.dvs_size, num_workers=args.workers, progress=False)
        start = time.perf_counter()
        train, test, _ = build_datasets("cifar10-dvs", tmp, options=options)
        first = time.perf_counter() - start
        n = len(train) + len(test)
        rows = {"first_pass_samples_per_s": n / first}
        if total_events:
            rows["first_pass_events_per_s"] = total_events / first
        for workers in (0, 2):
            rates = [timed_epoch(train, args.batch_size, workers) for _ in range(args.epochs)]
            rows[f"cached_samples_per_s_workers{workers}"] = statistics.median(rates)
        no_aug = build_datasets(
            "cifar10-dvs", tmp, options=DataOptions(num_steps=args.T, size=args.dvs_size, augment=(), progress=False)
        )[0]
        rows["cached_samples_per_s_workers0_no_augment"] = statistics.median(
            timed_epoch(no_aug, args.batch_size, 0) for _ in range(args.epochs)
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    device = f"cpu-{os.cpu_count()}cores"
    meta = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "tonic": tonic.__version__,
        "python": platform.python_version(),
        "command": "python benchmarks/dvs_loading.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "recordings": n,
        "events_per_recording": None if args.data_dir else args.events,
        "T": args.T,
        "dvs_size": args.dvs_size,
        "first_pass_workers": args.workers,
        "batch_size": args.batch_size,
    }
    result = {**meta, **{k: round(v, 1) for k, v in rows.items()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"dvs_loading-{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# DVS-CIFAR10 loading, {device}",
        "",
        f"`{meta['command']}` — torch {meta['torch']}, tonic {meta['tonic']}, {n} recordings"
        + (f" of {args.events:,} events (synthetic, real AEDAT4 format)" if not args.data_dir else ""),
        f", T={args.T}, frames {args.dvs_size}x{args.dvs_size}, batch {args.batch_size}.",
        "",
        "| stage | samples/s |",
        "|---|---|",
    ]
    lines.append(
        f"| first pass: decode + ToFrame + cache write ({args.workers} workers) | "
        f"{rows['first_pass_samples_per_s']:,.0f}"
        + (f" ({rows['first_pass_events_per_s'] / 1e6:.1f} M events/s) |" if total_events else " |")
    )
    for workers in (0, 2):
        lines.append(
            f"| cached epoch, {workers} loader workers, flip + translate | "
            f"{rows[f'cached_samples_per_s_workers{workers}']:,.0f} |"
        )
    lines.append(
        f"| cached epoch, 0 workers, no augmentation | {rows['cached_samples_per_s_workers0_no_augment']:,.0f} |"
    )
    target = rows["cached_samples_per_s_workers0"] >= 5000 or rows["cached_samples_per_s_workers2"] >= 5000
    lines += ["", f"Target >= 5,000 cached samples/s: {'met' if target else 'MISSED'}."]
    (RESULTS / f"dvs_loading-{device}.md").write_text("\n".join(lines).replace("\n, T=", ", T=") + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
