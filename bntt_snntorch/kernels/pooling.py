"""Average pooling that keeps nothing for backward.

``F.avg_pool2d``'s autograd node saves its input, although the gradient of an
average depends only on the input's shape. Between spiking layers that input
is a full ``(T*B, C, H, W)`` spike tensor; this node saves no tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        ctx.args = kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
        ctx.shape, ctx.dtype = x.shape, x.dtype
        return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    @staticmethod
    def backward(ctx, grad):
        shape_only = grad.new_zeros((), dtype=ctx.dtype).expand(ctx.shape)  # read for its sizes only
        return (torch.ops.aten.avg_pool2d_backward(grad, shape_only, *ctx.args),) + (None,) * 6


def avg_pool2d(x: torch.Tensor, pool: nn.AvgPool2d) -> torch.Tensor:
    """``pool(x)`` for ``x`` ``(N, C, H, W)``, equal in value and gradient, without saving ``x``."""
    stride = pool.stride if pool.stride else pool.kernel_size
    return _AvgPool2d.apply(
        x,
        list(_pair(pool.kernel_size)),
        list(_pair(stride)),
        list(_pair(pool.padding)),
        pool.ceil_mode,
        pool.count_include_pad,
        pool.divisor_override,
    )
