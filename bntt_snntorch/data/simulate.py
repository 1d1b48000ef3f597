"""Offline event data: static images -> DVS-like event streams.

A simulated event camera watches the image while it moves along three small
saccades (a triangle, as N-MNIST was recorded). Each pixel keeps a reference
log intensity and emits an ON (OFF) event every time its log intensity rose
(fell) by the contrast threshold since its last event. ``DigitsDVS`` applies
this to scikit-learn's digits (upsampled to 16x16), so ``--dataset digits-dvs``
trains on event data end to end without a download, through the same frame and
cache code as DVS-CIFAR10.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .events import framed_split
from .registry import DataOptions, DatasetInfo, register_dataset
from .static import digits_split_indices

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", bool)])


@dataclass(frozen=True)
class CameraSettings:
    """Simulation parameters (they key the frame cache)."""

    contrast: float = 0.15  # log-intensity change per event
    amplitude: float = 1.5  # saccade size in pixels
    substeps: int = 90  # camera positions along the path
    duration_us: int = 300_000
    noise_events: int = 10  # uniformly random background events per recording
    log_eps: float = 0.1  # log(eps + intensity)


def _saccade_path(n: int, amplitude: float) -> np.ndarray:
    """``(n, 2)`` camera offsets (dx, dy) along the triangle (0,0) -> (A,0) -> (A/2,A) -> (0,0)."""
    corners = np.array([[0, 0], [amplitude, 0], [amplitude / 2, amplitude], [0, 0]], dtype=np.float64)
    s = np.linspace(0.0, 3.0, n)
    segment = np.minimum(s.astype(int), 2)
    frac = (s - segment)[:, None]
    return corners[segment] * (1 - frac) + corners[segment + 1] * frac


def image_to_events(
    image: np.ndarray, rng: np.random.Generator, settings: CameraSettings = CameraSettings()
) -> np.ndarray:
    """Events of a moving image.

    Args:
        image: ``(H, W)`` intensities in [0, 1].
        rng: timestamp jitter and background noise.
    Returns:
        structured array (t [us], x, y, p) sorted by time, ``p`` True for ON.
    """
    H, W = image.shape
    path = _saccade_path(settings.substeps, settings.amplitude)
    times = np.linspace(0, settings.duration_us, settings.substeps)
    reference = np.log(settings.log_eps + image)
    chunks = []
    for k in range(1, settings.substeps):
        dx, dy = path[k]
        level = np.log(settings.log_eps + ndimage.shift(image, (dy, dx), order=1, mode="constant"))
        delta = level - reference
        count = np.floor(np.abs(delta) / settings.contrast).astype(np.int64)
        ys, xs = np.nonzero(count)
        if len(ys) == 0:
            continue
        n = count[ys, xs]
        polarity = delta[ys, xs] > 0
        reference[ys, xs] += np.where(polarity, 1, -1) * n * settings.contrast
        ev = np.zeros(int(n.sum()), EVENT_DTYPE)
        ev["x"], ev["y"], ev["p"] = np.repeat(xs, n), np.repeat(ys, n), np.repeat(polarity, n)
        step = times[k] - times[k - 1]
        ev["t"] = times[k - 1] + rng.uniform(0, step, len(ev))
        chunks.append(ev)
    noise = np.zeros(settings.noise_events, EVENT_DTYPE)
    noise["t"] = rng.integers(0, settings.duration_us, settings.noise_events)
    noise["x"], noise["y"] = rng.integers(0, W, settings.noise_events), rng.integers(0, H, settings.noise_events)
    noise["p"] = rng.random(settings.noise_events) < 0.5
    events = np.concatenate([*chunks, noise])
    return events[np.argsort(events["t"], kind="stable")]


class DigitsDVS:
    """scikit-learn's 1,797 digits as event recordings on a 16x16 sensor (tonic-style data set).

    ``dataset[i]`` -> ``(events, label)``, the same events for ``i`` on every call and machine.
    """

    sensor_size = (16, 16, 2)

    def __init__(self, settings: CameraSettings = CameraSettings(), seed: int = 0):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        self.images = bunch.images.astype(np.float64) / 16.0
        self.targets = bunch.target.tolist()
        self.data = [f"digits[{i}]" for i in range(len(self.targets))]
        self.settings, self.seed = settings, seed

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = ndimage.zoom(self.images[index], 2, order=1).clip(0.0, 1.0)
        rng = np.random.default_rng([self.seed, index])
        return image_to_events(image, rng, self.settings), self.targets[index]

    def digest(self) -> str:
        text = json.dumps({"settings": asdict(self.settings), "seed": self.seed, "n": len(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()


@register_dataset("digits-dvs", DatasetInfo("digits-dvs", 10, 2, 16, events=True))
def digits_dvs(data_dir: Path, download: bool, options: DataOptions):
    """The simulated event digits, split like ``digits`` (stratified 80/20, ``random_state=0``), cached frames."""
    source = DigitsDVS()
    train_idx, test_idx = digits_split_indices(source.targets)
    return framed_split(
        source,
        "digits-dvs",
        DigitsDVS.sensor_size,
        options,
        data_dir / "frame-cache",
        sorted(train_idx.tolist()),
        sorted(test_idx.tolist()),
        source.digest(),
    )
