"""Average pooling that keeps nothing for backward, on C loops where they apply.

``F.avg_pool2d``'s autograd node saves its input, although the gradient of an
average depends only on the input's shape. Between spiking layers that input
is a full ``(T*B, C, H, W)`` spike tensor; this node saves no tensor. On the CPU,
2x2 windows of float32 maps run the C loops of :mod:`.c_pool` (bit for bit torch's
values and gradients, several times faster) unless ``BNTT_KERNELS=eager``, under
``torch.compile``, or where they cannot be built (then torch's kernel, with one
warning where ``BNTT_KERNELS=c`` asked for the C loops; the failure is recorded in
:data:`~.fallback.FALLBACKS` as ``pool-c``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from . import c_pool
from .fallback import FALLBACKS, fallback_errors, record_failure
from .plan import kernel_setting


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, args: tuple, on_c: bool):
        ctx.args, ctx.shape, ctx.dtype, ctx.on_c = args, x.shape, x.dtype, on_c
        return c_pool.forward(x) if on_c else F.avg_pool2d(x, *args)

    @staticmethod
    def backward(ctx, grad):
        if ctx.on_c and not torch.is_grad_enabled():  # create_graph: torch's op, whose own gradient is known
            return c_pool.backward(grad), None, None
        shape_only = grad.new_zeros((), dtype=ctx.dtype).expand(ctx.shape)  # read for its sizes only
        return torch.ops.aten.avg_pool2d_backward(grad, shape_only, *ctx.args), None, None


def avg_pool2d(x: torch.Tensor, pool: nn.AvgPool2d, layer=None) -> torch.Tensor:
    """``pool(x)`` for ``x`` ``(N, C, H, W)``, equal in value and gradient, without saving ``x``; ``layer``:
    the module named in the warning if the C loops are asked for and cannot be built."""
    stride = pool.stride if pool.stride else pool.kernel_size
    kernel_size, stride, padding = list(_pair(pool.kernel_size)), list(_pair(stride)), list(_pair(pool.padding))
    args = kernel_size, stride, padding, pool.ceil_mode, pool.count_include_pad, pool.divisor_override
    return _AvgPool2d.apply(x, args, _on_c(x, kernel_size, stride, padding, pool.divisor_override, layer or pool))


def _on_c(x: torch.Tensor, kernel_size, stride, padding, divisor_override, layer) -> bool:
    """Whether :mod:`.c_pool`'s loops take this call (built here, at the first call that could take them)."""
    if torch.compiler.is_compiling() or "pool-c" in FALLBACKS:
        return False
    setting = kernel_setting()
    if setting == "eager" or not c_pool.applies(x, kernel_size, stride, padding, divisor_override):
        return False
    try:
        c_pool.library()
    except fallback_errors() as err:
        record_failure("pool-c", err, layer, warn=setting == "c")
        return False
    return True
