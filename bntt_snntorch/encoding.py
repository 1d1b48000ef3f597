"""Input encoders: static images ``(B, ...)`` -> time-major sequences ``(T, B, ...)``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

POISSON_RESCALE = 2.0  # the seed's: a pixel of |x| fires with probability |x| / 2 a step


def poisson(
    x: torch.Tensor, num_steps: int, generator: torch.Generator | None = None, rescale: float = POISSON_RESCALE
) -> torch.Tensor:
    """The BNTT seed's signed Poisson generator.

    Each step draws ``sign(x) * 1[rand * rescale <= |x|]``: spikes in
    {-1, 0, +1}, redrawn every step, firing with probability ``|x| / rescale``
    (capped at 1) for normalised images ``x``. Not snnTorch's unsigned
    ``spikegen.rate``. Reproducible with ``generator``.

    Args:
        x: images ``(B, C, H, W)`` (any shape ``(B, ...)``).
        num_steps: T.
    Returns:
        ``(T, B, ...)`` tensor of the dtype of ``x``.
    """
    rand = torch.rand((num_steps, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return _signed_spikes(rand, x, rescale)


def _signed_spikes(rand: torch.Tensor, x: torch.Tensor, rescale: float) -> torch.Tensor:
    """``sign(x) * 1[rand * rescale <= |x|]``: the Poisson rule, for one step or all of them."""
    return (rand * rescale <= x.abs()).to(x.dtype) * torch.sign(x)


def direct(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Direct coding: the analog input ``(B, ...)`` repeated at every step -> ``(T, B, ...)`` (a view)."""
    return x.unsqueeze(0).expand(num_steps, *x.shape)


def none(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """No encoding: the images ``(B, ...)`` themselves, no time axis (for the ANNs that get converted)."""
    return x


def events(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Event frames: a batch ``(B, T, P, H, W)`` of counts from the loader -> time-major float
    ``(T, B, P, H, W)`` (float32; under autocast the first conv casts it)."""
    if x.dim() < 3 or x.shape[1] != num_steps:
        raise ValueError(f"expected event frames (B, T={num_steps}, P, H, W), got shape {tuple(x.shape)}")
    return x.transpose(0, 1).float()


ENCODERS = {"p": poisson, "poisson": poisson, "d": direct, "direct": direct, "none": none, "events": events}


def encode(
    x: torch.Tensor, num_steps: int, method: str = "p", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Encode ``x`` ``(B, ...)`` with ``method`` ('p'/'poisson', 'd'/'direct', 'events' for
    frames ``(B, T, ...)``, or 'none') -> ``(T, B, ...)`` (``(B, ...)`` for 'none')."""
    if method not in ENCODERS:
        raise ValueError(f"unknown encoding {method!r}; choose one of {sorted(ENCODERS)}")
    if ENCODERS[method] is poisson:
        return poisson(x, num_steps, generator)
    return ENCODERS[method](x, num_steps)


def encode_steps(
    x: torch.Tensor, num_steps: int, method: str = "p", generator: torch.Generator | None = None
) -> Iterator[torch.Tensor]:
    """The T steps of :func:`encode`, one ``(B, ...)`` tensor at a time, each made when it is asked for:
    Poisson spikes drawn step by step from ``generator`` (on CPU the same draws as :func:`encode`'s
    all-at-once stream, tested; a CUDA generator hands out its numbers in another order, so there the
    per-step spikes are a different, equally distributed draw), the image itself for direct coding,
    step t's frames for events. No step is a view of a ``(T, B, ...)`` sequence, so what a layer saves
    for backward at one step keeps nothing of the other steps alive (online training)."""
    if method not in ENCODERS or method == "none":
        timed = sorted(set(ENCODERS) - {"none"})
        raise ValueError(f"encode_steps takes a coding with time steps; choose one of {timed}")
    if method == "events":
        events(x, num_steps)  # the shape check
    for t in range(num_steps):
        if ENCODERS[method] is poisson:
            rand = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            yield _signed_spikes(rand, x, POISSON_RESCALE)
        elif method == "events":
            yield x[:, t].float()
        else:
            yield x


@dataclass
class SequenceEncoder:
    """``encoder(x)``: :func:`encode` of ``x`` ``(B, ...)`` -> ``(T, B, ...)``; ``encoder.steps(x)``: the same
    steps one at a time (:func:`encode_steps`), which the online training rules use."""

    num_steps: int
    method: str = "p"
    generator: torch.Generator | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return encode(x, self.num_steps, self.method, self.generator)

    def steps(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        return encode_steps(x, self.num_steps, self.method, self.generator)
