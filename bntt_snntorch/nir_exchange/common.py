"""What every part of the NIR exchange shares: the time step, the metadata key, the readout and
input descriptions, and the ``nir`` import that names its extra."""

from __future__ import annotations

import numpy as np

DT = 1e-4
META = "bntt_snntorch"  # the key of our metadata in a node's and in the graph's metadata
READOUT_MEAN = "mean over T"
ENCODINGS = {
    "p": "signed Poisson spikes in {-1, 0, 1} (probability |x|/2 each step), one step per call",
    "poisson": "signed Poisson spikes in {-1, 0, 1} (probability |x|/2 each step), one step per call",
    "d": "the analog image (direct coding), the same at every step",
    "direct": "the analog image (direct coding), the same at every step",
    "events": "one event frame (polarity channels) per step",
}


def nir_module():
    """The ``nir`` package, or an ImportError saying which extra installs it."""
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export needs the nir extra: pip install 'bntt_snntorch[nir]'") from None
    return nir


def pair(value) -> tuple[int, int]:
    """An int or a pair, as NIR stores it, as a pair of ints."""
    values = tuple(int(v) for v in np.atleast_1d(np.asarray(value)))
    return values * 2 if len(values) == 1 else values
