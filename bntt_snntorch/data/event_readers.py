"""Readers of the event files of N-MNIST, N-Caltech101 and DVS Gesture, each equal to tonic's.

``read_*`` return the structured array tonic's data set returns (the same fields, dtypes and events,
tested against ``tonic.io.read_mnist_file``, ``tonic.datasets.NCALTECH101`` and ``DVSGesture``);
``*_columns`` the same events as :class:`EventColumns`, what the frame cache bins (a small recording's
decode costs less than packing its structured array). Decoded in whole-array numpy operations: the
ATIS files' 5-byte events as five strided byte views, and their timestamp overflow records as one
cumulative sum where tonic adds ``2**13`` to the rest of the recording once per record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tonic

#: tonic's event dtypes (fields x, y, t, p), which the frames and every later transform see.
ATIS_DTYPE = tonic.datasets.NMNIST.dtype
GESTURE_DTYPE = tonic.datasets.DVSGesture.dtype

OVERFLOW_Y = 240  # an ATIS record with y == 240 is a timestamp overflow, not an event
OVERFLOW_STEP = 2**13  # what each overflow record adds to every later timestamp (us)


@dataclass(frozen=True)
class EventColumns:
    """Events as four equal-length columns, indexed by field name as tonic's structured arrays are
    (``events["t"]``): what :func:`.events.bin_events` reads, without packing a structured array."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def __len__(self) -> int:
        return len(self.t)

    def structured(self, dtype: np.dtype) -> np.ndarray:
        """The events as a structured array of ``dtype`` (numpy's casts, as tonic's readers make them)."""
        events = np.empty(len(self), dtype)
        for name in dtype.names:
            events[name] = self[name]
        return events


def atis_columns(path) -> EventColumns:
    """Events of an N-MNIST / N-Caltech101 ``.bin`` file: x, y, p as bytes, t as uint32 microseconds.

    Each event is 5 bytes: x, y, then polarity (bit 7) and a 23-bit timestamp over the last three
    bytes. A record with ``y == 240`` is an overflow: it adds ``2**13`` to every later timestamp (in
    tonic's uint32 arithmetic) and is dropped. A file whose size is not a multiple of 5 raises
    ``ValueError`` (tonic would drop a one-byte tail, or fail with an ``IndexError``)."""
    with open(path, "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(f"{raw.size} bytes is not a whole number of 5-byte events (a truncated file?)")
    x, y, polarity_time, time_mid, time_low = (raw[k::5] for k in range(5))
    times = (polarity_time & 127).astype(np.uint32)
    times <<= 8
    times |= time_mid
    times <<= 8
    times |= time_low
    overflow = y == OVERFLOW_Y
    if overflow.any():
        times += np.cumsum(overflow, dtype=np.uint32) * np.uint32(OVERFLOW_STEP)
        keep = ~overflow
        x, y, polarity_time, times = x[keep], y[keep], polarity_time[keep], times[keep]
    return EventColumns(x, y, times, polarity_time >> 7)


def ncaltech_columns(path) -> EventColumns:
    """:func:`atis_columns` with x and y shifted so that each starts at 0, as ``tonic.datasets.NCALTECH101``
    gives them (``ValueError`` for a file with no events)."""
    events = atis_columns(path)
    if len(events) == 0:
        raise ValueError("the recording holds no events")
    return EventColumns(events.x - events.x.min(), events.y - events.y.min(), events.t, events.p)


def read_atis_bin(path) -> np.ndarray:
    """Events of an N-MNIST ``.bin`` file, equal to ``tonic.io.read_mnist_file(path, NMNIST.dtype)``."""
    return atis_columns(path).structured(ATIS_DTYPE)


def read_ncaltech_bin(path) -> np.ndarray:
    """Events of an N-Caltech101 ``.bin`` file, equal to ``tonic.datasets.NCALTECH101``'s."""
    return ncaltech_columns(path).structured(ATIS_DTYPE)


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
