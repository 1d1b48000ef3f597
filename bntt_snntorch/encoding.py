"""Input encoders: static images ``(B, ...)`` -> time-major sequences ``(T, B, ...)``."""

from __future__ import annotations

import torch


def poisson(
    x: torch.Tensor, num_steps: int, generator: torch.Generator | None = None, rescale: float = 2.0
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
