"""Training-mode batch norm with statistics over all ranks (torchrun), for BNTT's ``T*C`` channel view.

``nn.SyncBatchNorm``'s recipe: each rank computes its per-channel mean and biased variance with torch's
own kernel (``torch.batch_norm_update_stats``), the ranks exchange ``(mean, var, count)`` with one
``all_gather`` and combine them with the parallel-variance formula (Chan et al.)::

    mean = sum_r n_r mean_r / N,   var = sum_r n_r (var_r + (mean_r - mean)^2) / N

in float64 — never ``E[x^2] - mean^2``, which cancels catastrophically for activations far from zero
(mean 1e4, std 1: a negative variance in float32). ``nn.SyncBatchNorm`` combines with
``torch.batch_norm_gather_stats_with_counts``, which has no CPU kernel (torch 2.14), so the same
formula is written here once for every device. The backward is ``nn.SyncBatchNorm``'s: the two
per-channel gradient sums are all-reduced, the weight gradient stays local (DDP averages it). The normalisation
(inverse std, coefficients, current), the sums and the input gradient are the definition's
(:mod:`bntt_snntorch.definition`), as in the fused block a single process runs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from . import definition


class _SyncedBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps: float):
        channels = x.shape[1]
        mean, var = torch.batch_norm_update_stats(x, None, None, 0.0)
        count = torch.full((1,), x.numel() // channels, dtype=torch.float64, device=x.device)
        local = torch.cat([mean.double(), var.double(), count])
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
        table = torch.stack(gathered)  # (ranks, 2C + 1)
        means, variances, counts = table[:, :channels], table[:, channels : 2 * channels], table[:, -1:]
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / total
        state = torch.promote_types(x.dtype, torch.float32)
        mean, var = mean.to(state), var.to(state)
        rstd = definition.inverse_std(var, eps)
        k, shift = definition.coefficients(mean, rstd, 1.0 if weight is None else weight.detach().to(state), 1.0)
        shape = (-1,) + (1,) * (x.dim() - 2)
        rounds = x.dtype in (torch.bfloat16, torch.float16)
        out = definition.current(x, k.view(shape), shift.view(shape), rounds).to(x.dtype)
        ctx.save_for_backward(x, weight, mean, rstd, total)
        ctx.mark_non_differentiable(mean, var, total)
        return out, mean, var, total

    @staticmethod
    def backward(ctx, grad_out, *_):
        x, weight, mean, rstd, total = ctx.saved_tensors
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = [0, *range(2, x.dim())]
        state = rstd.dtype
        xs, dy, mean_b = x.to(state), grad_out.to(state), mean.view(shape)
        sums = torch.stack([dy.sum(dims), definition.centred_gradient(dy, xs, mean_b).sum(dims)])
        grad_weight = None
        if weight is not None and ctx.needs_input_grad[1]:  # the rank's own: DDP averages it
            grad_weight = (sums[1] * rstd).to(weight.dtype)
        dist.all_reduce(sums)  # the gradient of the loss summed over ranks, as nn.SyncBatchNorm
        _, mean_dy, mean_dy_xhat = definition.gradient_moments(sums[0], sums[1], rstd, total)
        k = rstd if weight is None else rstd * weight.to(state)
        grad_x = definition.normalise_input_grad(
            dy, xs, k.view(shape), mean_b, rstd.view(shape), mean_dy.view(shape), mean_dy_xhat.view(shape), True
        )
        return grad_x.to(x.dtype), grad_weight, None


def synced_batch_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float):
    """Batch norm of ``x`` ``(B, C, ...)`` with the batch statistics of every rank's ``x`` together.

    Returns ``(out, mean, var, count)``: the normalised ``x`` (times ``weight`` ``(C,)`` if given, no
    bias), the combined mean and biased variance ``(C,)`` and the number of values per channel over
    all ranks (a float64 tensor), for the running-statistics update. Call it on every rank.
    """
    return _SyncedBatchNorm.apply(x, weight, eps)
