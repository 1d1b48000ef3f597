"""Whether a backward may write its input's gradient over the gradient autograd handed it.

The fused nodes' backward (:mod:`.fused_block`, :mod:`.fused_tab`) turns ``dL/dspikes`` ``(T, B, C, ...)`` into
``dL/dcurrent`` of the same shape, reading each element before writing the same element; where nothing else holds
``dL/dspikes``, the result can take its place: one buffer as large as the layer's activations less at the peak
of the backward. Whether nothing else holds it is read from the tensor's owners, compared with those of a gradient
only autograd holds (measured once in this process, so the count suits this Python and torch).
"""

from __future__ import annotations

import sys

import torch


def _references(grad: torch.Tensor, python_references: int) -> tuple[int, ...]:
    """How many hold ``grad``: its tensor's C++ owners, its Python object's references (``python_references``:
    ``sys.getrefcount(grad)`` read in the backward itself), its storage's owners, and for a view its base's owners."""
    counts = grad._use_count(), python_references, torch._C._storage_Use_Count(grad.untyped_storage()._cdata)
    return counts + ((grad._base._use_count(),) if grad._is_view() else ())


class _Probe(torch.autograd.Function):
    """A backward that only records :func:`_references` of the gradient autograd hands it, held by nobody else."""

    seen: tuple[int, ...] | None = None

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad, *_):
        _Probe.seen = _references(grad, sys.getrefcount(grad))
        return grad


_FRESH: dict[bool, tuple[int, ...]] = {}


def _references_of_a_fresh_gradient(view: bool) -> tuple[int, ...]:
    """:func:`_references` of a gradient only autograd holds (``view``: a view of one, as a reshape's backward
    hands on), as a backward here sees it (measured once)."""
    if view not in _FRESH:
        x = torch.zeros(2, 3, requires_grad=True)
        with torch.enable_grad():
            y = _Probe.apply(x)
            ((y.flatten() if view else y) * 2.0).sum().backward()
        _FRESH[view] = _Probe.seen
    return _FRESH[view]


def overwritable(grad: torch.Tensor, like: torch.Tensor, python_references: int) -> bool:
    """Whether the gradient autograd handed to a backward may receive the input's gradient in place: ``like``'s
    shape and dtype, contiguous, and held by no one else than a fresh gradient (or a view of one) is: not the
    caller's tensor given to ``backward()``, not kept by a hook (``retain_grad`` keeps a copy). Saves a buffer as
    large as the layer's activations at the backward's peak; where in doubt, False. ``python_references``:
    ``sys.getrefcount(grad)`` read in the backward's own frame (``def backward(ctx, grad, *_)``), as the probe
    reads it."""
    if grad.shape != like.shape or grad.dtype != like.dtype or not grad.is_contiguous():
        return False
    fresh = _references_of_a_fresh_gradient(grad._is_view())
    now = _references(grad, python_references)
    return len(now) == len(fresh) and all(a <= b for a, b in zip(now, fresh))
