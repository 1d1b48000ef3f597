"""Average pooling that keeps nothing for backward, on C loops where they apply.

``F.avg_pool2d``'s autograd node saves its input, although the gradient of an
average depends only on the input's shape. Between spiking layers that input
is a full ``(T*B, C, H, W)`` spike tensor; this node saves no tensor. The plan
(:func:`~.plan.choose_plan` with ``pool=``) says where it runs: on the CPU, 2x2
windows of float32 maps run the C loops of :mod:`.c_pool` (bit for bit torch's
values and gradients, several times faster) unless ``BNTT_KERNELS=eager``, under
``torch.compile``, or where they cannot be built (then torch's kernel, with one
warning where ``BNTT_KERNELS=c`` asked for the C loops; the failure is recorded in
:data:`~.fallback.FALLBACKS` as ``pool-c``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import c_pool
from .fallback import attempt
from .plan import choose_plan, kernel_setting, record_taken, report


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


#: The pooling's paths: on the C loops or torch's kernel.
POOL_PATHS = {"pool-c": True, "pool-torch": False}


def avg_pool2d(x: torch.Tensor, pool: nn.AvgPool2d, layer=None) -> torch.Tensor:
    """``pool(x)`` for ``x`` ``(N, C, H, W)``, equal in value and gradient, without saving ``x``, on the path the
    plan gives (reported for ``layer``, and named in the warning if the C loops are asked for and cannot be
    built)."""
    kernel_size, stride, padding, divisor_override = c_pool.window(pool)
    args = kernel_size, stride, padding, pool.ceil_mode, pool.count_include_pad, divisor_override
    plan = report(layer, choose_plan(x, pool=pool))
    run = lambda path: _AvgPool2d.apply(x, args, POOL_PATHS[path])  # noqa: E731
    y, path = attempt(layer or pool, plan.path, run, warn=kernel_setting() == "c")
    record_taken(layer, path)
    return y
