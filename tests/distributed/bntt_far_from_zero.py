"""Run under torchrun with 2 gloo ranks (tests/test_distributed_bntt.py): a synchronised BatchNormTT2d on
activations of mean 1e4 and std 1, multi-step and per step, against a float64 batch norm over both
ranks' data. Rank 0 writes the comparison to the JSON file named on the command line."""

import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

import bntt_snntorch as bn
from bntt_snntorch.training.distributed import sync_batchnorm_tt

T, B, C, H, W = 3, 4, 5, 6, 6


def main(out_path: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    gen = torch.Generator().manual_seed(7)
    data = torch.randn(world, T, B, C, H, W, generator=gen, dtype=torch.float64) + 1e4  # every rank's data
    weights = torch.rand(T, C, generator=gen, dtype=torch.float64) + 0.5
    grad_out = torch.randn(world, T, B, C, H, W, generator=gen, dtype=torch.float64)
    # float64 reference: one batch norm per step over both ranks' batches; loss summed over ranks
    x64 = data.clone().requires_grad_()
    w64 = weights.clone().requires_grad_()
    ref = torch.stack(
        [F.batch_norm(x64[:, t].flatten(0, 1), None, None, w64[t], None, True, 0.0, 1e-5) for t in range(T)]
    )  # (T, world*B, C, H, W)
    (ref * grad_out.transpose(0, 1).flatten(1, 2)).sum().backward()
    ref_mean = data.transpose(0, 1).flatten(1, 2).mean(dim=(1, 3, 4))
    ref_var = data.transpose(0, 1).flatten(1, 2).var(dim=(1, 3, 4), unbiased=True)
    result = {}
    for mode in ("m", "s"):
        layer = sync_batchnorm_tt(bn.BatchNormTT2d(C, T, step_mode=mode, momentum=1.0))  # running = this batch
        with torch.no_grad():
            for t in range(T):
                layer[t].weight.copy_(weights[t].float())
        x = data[rank].float().requires_grad_()
        out = layer(x) if mode == "m" else torch.stack([layer(x[t]) for t in range(T)])
        (out * grad_out[rank].float()).sum().backward()
        grad_w = torch.stack([layer[t].weight.grad for t in range(T)])
        dist.all_reduce(grad_w)  # DDP averages; the sum over ranks is the gradient of the summed loss
        own = ref[:, rank * B : (rank + 1) * B]
        result[mode] = {
            "out_err": (out.double() - own).abs().max().item(),
            "nan": bool(out.isnan().any()),
            "grad_x_err": (x.grad.double() - x64.grad[rank]).abs().max().item(),
            "grad_x_scale": x64.grad[rank].abs().max().item(),
            "grad_w_err": (grad_w.double() - w64.grad).abs().max().item(),
            "grad_w_scale": w64.grad.abs().max().item(),
            "running_mean_err": max(
                (layer[t].running_mean.double() - ref_mean[t]).abs().max().item() for t in range(T)
            ),
            "running_var_err": max((layer[t].running_var.double() - ref_var[t]).abs().max().item() for t in range(T)),
        }
    # what batch norm reaches in one process on the same float32 data (the precision to match)
    one = torch.stack([F.batch_norm(data[:, t].flatten(0, 1).float(), None, None, weights[t].float(), None, True)
                       for t in range(T)])  # fmt: skip
    result["single_process_out_err"] = (one.double() - ref.detach()).abs().max().item()
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
