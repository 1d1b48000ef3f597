"""2x2 average pooling (stride 2, no padding) of float32 ``(N, C, H, W)`` maps on the CPU as C loops (``csrc/pool.c``).

torch's CPU kernel for contiguous maps walks each of the ``N * C`` planes on its own with a scalar loop
over its few windows (an 8x8 map has 16): between the digits net's blocks it took 0.6 ms forward and as
long backward for a ``(320, 32, 8, 8)`` batch, 9.7 ms and 10.9 ms for VGG9's ``(160, 64, 32, 32)``. Here one
loop runs over all row pairs of the batch: 7-13x faster forward, 7-16x backward at the models' shapes,
AVX-512 and AVX2 builds (``benchmarks/results/pooling-*.md``). The arithmetic is torch's: a window summed
from zero in row order and divided by 4; backward, ``0 + grad / 4`` for each of the window's four inputs.
Values and gradients are bit for bit ``F.avg_pool2d``'s (negative zeros and subnormals included; tested).
"""

from __future__ import annotations

from functools import cache

import torch
from torch.nn.modules.utils import _pair

from . import c_build


@cache
def library() -> c_build.Kernels:
    """The loops of ``csrc/pool.c`` built (once; :func:`~.c_build.build` reuses a library built before)."""
    return c_build.Kernels(c_build.build(["pool.c"]), ["avg_pool_2x2", "avg_pool_2x2_backward"])


def window(pool) -> tuple[list[int], list[int], list[int], int | None]:
    """``(kernel_size, stride, padding, divisor_override)`` of an ``nn.AvgPool2d``, as lists of two."""
    stride = pool.stride if pool.stride else pool.kernel_size
    return list(_pair(pool.kernel_size)), list(_pair(stride)), list(_pair(pool.padding)), pool.divisor_override


def applies(x: torch.Tensor, kernel_size, stride, padding, divisor_override) -> bool:
    """Whether the loops compute ``F.avg_pool2d(x, kernel_size, stride, padding, ...)``: a contiguous float32 CPU
    ``(N, C, H, W)`` tensor with even ``H`` and ``W``, 2x2 windows, stride 2, no padding, no divisor override
    (``ceil_mode`` and ``count_include_pad`` change nothing then)."""
    return applies_to(tuple(x.shape), x.dtype, x.device.type, x.is_contiguous(), kernel_size, stride, padding,
                      divisor_override)  # fmt: skip


def applies_to(shape, dtype, device: str, contiguous: bool, kernel_size, stride, padding, divisor_override) -> bool:
    """:func:`applies` from the input's shape, dtype, device and contiguity."""
    return (
        device == "cpu"
        and dtype == torch.float32
        and len(shape) == 4
        and shape[-2] % 2 == 0
        and shape[-1] % 2 == 0
        and contiguous
        and list(kernel_size) == [2, 2]
        and list(stride) == [2, 2]
        and list(padding) == [0, 0]
        and divisor_override is None
    )


def forward(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, H / 2, W / 2)``, for ``x`` that :func:`applies`."""
    N, C, H, W = x.shape
    y = torch.empty(N, C, H // 2, W // 2, dtype=torch.float32)
    library()("avg_pool_2x2", x=x, y=y, P=N * C, H=H, W=W)
    return y


def backward(grad: torch.Tensor) -> torch.Tensor:
    """The input's gradient ``(N, C, 2h, 2w)`` from the output's ``grad`` ``(N, C, h, w)``."""
    grad = grad.contiguous()
    N, C, h, w = grad.shape
    dx = torch.empty(N, C, 2 * h, 2 * w, dtype=torch.float32)
    library()("avg_pool_2x2_backward", g=grad, dx=dx, P=N * C, H=2 * h, W=2 * w)
    return dx
