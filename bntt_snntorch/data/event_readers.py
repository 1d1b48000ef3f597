"""Readers of the event files of N-MNIST, N-Caltech101 and DVS Gesture, each equal to tonic's.

Every reader returns the structured array tonic's data set returns (the same fields, dtypes and
events, tested against ``tonic.io.read_mnist_file`` and ``tonic.datasets.DVSGesture``), decoded in
whole-array numpy operations: the ATIS files' 5-byte events as one ``(N, 5)`` byte view, and their
timestamp overflow records as one cumulative sum where tonic adds ``2**13`` to the rest of the
recording once per record.
"""

from __future__ import annotations

import numpy as np
import tonic

#: tonic's event dtypes (fields x, y, t, p), which the frames and every later transform see.
ATIS_DTYPE = tonic.datasets.NMNIST.dtype
GESTURE_DTYPE = tonic.datasets.DVSGesture.dtype

OVERFLOW_Y = 240  # an ATIS record with y == 240 is a timestamp overflow, not an event
OVERFLOW_STEP = 2**13  # what each overflow record adds to every later timestamp (us)


def read_atis_bin(path) -> np.ndarray:
    """Events of an N-MNIST / N-Caltech101 ``.bin`` file, as ``tonic.io.read_mnist_file(path, NMNIST.dtype)``.

    Each event is 5 bytes: x, y, then polarity (bit 7) and a 23-bit timestamp in microseconds over the
    last three bytes. A record with ``y == 240`` is an overflow: it adds ``2**13`` to every later
    timestamp and is dropped. A file whose size is not a multiple of 5 raises ``ValueError`` (tonic
    would drop a one-byte tail, or fail with an ``IndexError``)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(f"{raw.size} bytes is not a whole number of 5-byte events (a truncated file?)")
    records = raw.reshape(-1, 5)
    stamp = records[:, 2:].astype(np.uint32)
    times = ((stamp[:, 0] & 127) << 16) | (stamp[:, 1] << 8) | stamp[:, 2]
    overflow = records[:, 1] == OVERFLOW_Y
    if overflow.any():
        times += np.cumsum(overflow, dtype=np.uint32) * np.uint32(OVERFLOW_STEP)  # tonic's uint32 arithmetic
        keep = ~overflow
        records, times = records[keep], times[keep]
    events = np.empty(len(records), ATIS_DTYPE)
    events["x"], events["y"], events["t"] = records[:, 0], records[:, 1], times
    events["p"] = records[:, 2] >> 7
    return events


def read_ncaltech_bin(path) -> np.ndarray:
    """Events of an N-Caltech101 ``.bin`` file as ``tonic.datasets.NCALTECH101`` gives them: the ATIS
    events with x and y shifted so that each starts at 0 (``ValueError`` for a file with no events)."""
    events = read_atis_bin(path)
    if len(events) == 0:
        raise ValueError("the recording holds no events")
    events["x"] -= events["x"].min()
    events["y"] -= events["y"].min()
    return events


def read_gesture_npy(path) -> np.ndarray:
    """Events of a DVS Gesture ``.npy`` recording as ``tonic.datasets.DVSGesture`` gives them: the
    ``(N, 4)`` columns x, y, p, t [ms] with t made microseconds in the array's own dtype, then cast
    to tonic's fields (numpy's unsafe casting, as ``unstructured_to_structured``)."""
    columns = np.load(path, allow_pickle=False)
    if columns.ndim != 2 or columns.shape[1] != 4:
        raise ValueError(f"expected an (N, 4) array of x, y, p, t, got shape {columns.shape}")
    events = np.empty(len(columns), GESTURE_DTYPE)
    events["x"], events["y"], events["p"] = columns[:, 0], columns[:, 1], columns[:, 2]
    events["t"] = columns[:, 3] * columns.dtype.type(1000)
    return events
