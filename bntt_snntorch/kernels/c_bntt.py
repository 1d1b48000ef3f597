"""The ``synapse -> BNTT -> leaky`` block on the CPU as C loops (``csrc/bntt.c``) around the definition's formulas.

The eager torch path runs a dozen small ops a step and layer in each direction; each is a dispatch and a
pass over a ``(B, C, ...)`` slice. Here each direction is one loop nest over the steps, the membrane kept
in a chunk of a channel's row. The formulas are :mod:`bntt_snntorch.definition`'s, written out as C functions
for the block's variant (:mod:`.c_definition`'s ``definition.h``); ``csrc/bntt.c`` holds only the loops
around them. The library is built with the system's C compiler at first use (well under a second;
:mod:`.c_build` keeps it beside TorchInductor's cache, one file per build) and runs on torch's own OpenMP
threads.

Four functions, the layout of :mod:`.triton_bntt` (a sequence ``(T, B, C, L)``, ``L`` the spatial size):

* :func:`batch_statistics` — each step's per-channel mean and biased variance (two passes);
* :func:`forward` — ``current = k * x + shift``, then the neuron, writing spikes only;
* :func:`forward_with_statistics` — training's forward: the two above and the coefficients between them, a
  channel (or a block of channels) at a time, so each value is read from memory once, not three times; the
  running statistics (:class:`RunningStatistics`) updated there too;
* :func:`backward` — recomputes the membranes of a chunk, walks the steps back writing ``dL/dcurrent``
  and adding its per-(step, channel) sums, then turns it into batch norm's input gradient in place.

Rows are chunks of a channel's spatial positions (convolutions of at least :data:`ROW_MIN` positions) or
of a sample's ``C * L`` values (small maps, and ``L = 1``: linear synapses; coefficients and sums per
element), taken in memory order so that every pass streams; sums are kept per thread and added up after.
Subnormal floats count as zero inside the loops, the statistics of training's one-pass forward included (a
decaying gradient would otherwise take the CPU's slow path; the difference is below 1e-38). float32 only
(:class:`~.backends.CBackend` says why not where they do not apply).
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import torch

from .. import definition
from . import c_build
from .c_definition import Build, header

#: Channels with fewer spatial positions than this run the flat loops (rows across channels, coefficients per
#: element): a row of a few vectors would spend its time on per-row sums and loop set-up, not on the values.
#: Where the two cross (AVX-512 and AVX2 builds alike, one 2-core machine): the flat backward 1.2-6x faster
#: at 4x4, 6x6 and 2x2 maps, 1.7x slower at 8x8.
ROW_MIN = 64

#: The build the statistics alone are taken from (every build has them; they do not depend on the neuron).
STATISTICS_BUILD = Build((0, True, 0), (0, 1.0, 1.0), True)


@cache
def library(build: Build) -> c_build.Kernels:
    """The loops of ``build`` built (once per build; a library built before is loaded)."""
    built = c_build.build(["bntt.c"], {"definition.h": header(build)})
    return c_build.Kernels(built, [name for name in c_build.SIGNATURES if name.startswith("bntt_")])


def _layout(x: torch.Tensor) -> dict[str, int]:
    T, B, C = x.shape[:3]
    return dict(T=T, B=B, C=C, L=math.prod(x.shape[3:]))


def _loops(name: str, x: torch.Tensor) -> str:
    """The row or flat version of loop ``name`` for ``x``'s spatial size."""
    return f"{name}_flat" if math.prod(x.shape[3:]) < ROW_MIN else name


def _tables(x: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``count`` float32 ``(T, C)`` tables to be written by the loops."""
    return [torch.empty(x.shape[0], x.shape[2], dtype=torch.float32) for _ in range(count)]


def batch_statistics(x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each step's per-channel mean and biased variance of ``x_seq`` ``(T, B, C, ...)`` (float32 ``(T, C)`` each)."""
    x = x_seq.detach().contiguous()
    mean, var = _tables(x, 2)
    library(STATISTICS_BUILD)(_loops("bntt_stats", x), x=x, mean=mean, var=var, **_layout(x))
    return mean, var


def forward(x, k, shift, mem0, params, build: Build, last=True):
    """Spikes ``(T, B, C, ...)`` and (``last``; else None) the last membrane ``(B, C, ...)`` from membrane
    ``mem0`` (float32, contiguous; None: zeros); ``x``, ``k``, ``shift`` contiguous, ``k``, ``shift``:
    ``(T, C)``; ``params`` = ``[beta, theta, g]`` (float32); ``build``: the loops the backward will use (built
    here, so that a build failure shows in the forward)."""
    spk = torch.empty_like(x)
    mem = torch.empty(x.shape[1:], dtype=torch.float32) if last else None
    library(build)(_loops("bntt_forward", x), x=x, k=k, shift=shift, m0=mem0, spk=spk, mem_last=mem, params=params,
                     **_layout(x))  # fmt: skip
    return spk, mem


def backward(grad_spk, x, k, shift, mean, rstd, mem0, params, build: Build, out=None):
    """``(dL/dx, sum(dy * xhat) (T, C), sum(dy) (T, C), dL/dbeta (of the clamped beta), dL/dtheta)`` from the
    spikes' gradient (``dy = dL/dcurrent``) for the forward from ``mem0`` (None: zeros); ``dL/dx`` includes the
    statistics' dependence on ``x`` where ``build.training``; ``build.through_time`` False: each step's
    gradient through its own input only (no carry from step t + 1). ``out``: ``grad_spk`` itself (contiguous
    float32) to receive ``dL/dx`` in place (each element is read before it is written), else a new tensor."""
    grad_spk = grad_spk.contiguous().float()
    grad_x = torch.empty_like(x) if out is None else out
    sum_dy, sum_dy_xhat = _tables(x, 2)
    part = torch.empty(2, dtype=torch.float32)
    library(build)(_loops("bntt_backward", x), gs=grad_spk, x=x, k=k, shift=shift, mean=mean, rstd=rstd, m0=mem0,
                     dx=grad_x, sum_dy=sum_dy, sum_dy_xhat=sum_dy_xhat, part=part, params=params,
                     **_layout(x))  # fmt: skip
    return grad_x, sum_dy_xhat, sum_dy, part[0], part[1]


class RunningStatistics(NamedTuple):
    """Batch norm's running statistics for :func:`forward_with_statistics` to update in its pass: ``mean`` and
    ``var`` ``(T, C)`` float32, ``counts`` ``(T,)`` int64 (``num_batches_tracked``), all contiguous and written in
    place; ``momentum``; ``count``: the values a channel of a step (the variance is made unbiased with it)."""

    mean: torch.Tensor
    var: torch.Tensor
    counts: torch.Tensor
    momentum: float
    count: int


def forward_with_statistics(x, weight, eps, scale, mem0, params, build: Build, last=True,
                            running: RunningStatistics | None = None):  # fmt: skip
    """Training's forward with its own batch statistics, in one pass over each channel (read once from memory
    for the statistics, the coefficients and the neuron): ``(spikes, last membrane (None unless last), mean,
    var, rstd, k, shift)``, the last five ``(T, C)``, each equal to :func:`batch_statistics`, then
    :func:`~.bntt_scan.loop_arguments`' coefficients, then :func:`forward` (the same arithmetic, in the same
    order). ``weight``: the gammas ``(T, C)`` (float32, contiguous) or None (``affine=False``); ``eps``,
    ``scale``: batch norm's and the block's input scale; ``running``: running statistics updated in the same
    pass as batch norm updates them (bit for bit :meth:`~bntt_snntorch.BatchNormTT.record_statistics`), or
    None; the rest as :func:`forward`'s."""
    T, C = x.shape[0], x.shape[2]
    if weight is not None and (tuple(weight.shape) != (T, C) or weight.dtype != torch.float32):
        raise ValueError(
            f"expected float32 gammas of shape (T, C) = {(T, C)}, got {weight.dtype} {tuple(weight.shape)}"
        )
    spk = torch.empty_like(x)
    mem = torch.empty(x.shape[1:], dtype=torch.float32) if last else None
    mean, var, rstd, k, shift = _tables(x, 5)
    rm = rv = counts = None
    momentum, unbias = 0.0, 1.0
    if running is not None:
        rm, rv, counts = running[:3]
        momentum, unbias = running.momentum, definition.unbiased_factor(running.count)
    library(build)(
        _loops("bntt_forward_stats", x), x=x, w=weight, eps=eps, scale=scale, m0=mem0, spk=spk, mem_last=mem,
        mean=mean, var=var, rstd=rstd, k=k, shift=shift, rm=rm, rv=rv, counts=counts, momentum=momentum,
        unbias=unbias, params=params, **_layout(x),
    )  # fmt: skip
    return spk, mem, mean, var, rstd, k, shift
