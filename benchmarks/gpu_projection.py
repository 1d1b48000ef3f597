"""A GPU projection for BNTT VGG9 training, from counts made on the CPU. Not a measurement.

    python benchmarks/gpu_projection.py        # writes benchmarks/results/gpu-projection.md/.json

Method (every number in the output comes from these steps):

1. Count. One bf16-autocast training step (forward + backward) of each variant runs on the
   CPU at batch ``--count-batch`` under a ``TorchDispatchMode`` that records, for every aten op,
   the bytes of its tensor inputs and outputs and, with ``torch.utils.flop_counter``, the FLOPs
   of convolutions and matrix products. Ops are split into *matmul-class* (convolution, mm,
   their backward) and *memory-bound* (everything else: batch norm, the neuron, pooling,
   casts, copies). Saved-for-backward bytes come from ``bntt_snntorch.profiling``.
2. Scale. Every count is linear in the batch; they are scaled to ``--batch-size`` (256).
3. Bound. On a GPU with bandwidth ``BW`` and dense bf16 throughput ``P``:
   ``time = FLOPs / (eta_mm * P) + bytes / (eta_bw * BW) + launches * t_launch`` (no overlap
   between the two classes; each eager op is one kernel that reads its inputs and writes its
   outputs once, which over-counts where cuDNN/cuBLAS fuse and under-counts cache misses).
4. Memory. Peak training memory ~= saved-for-backward + 4x the parameters (weights, grads,
   momentum, a bf16 copy) + the largest single op's inputs and outputs (workspace).

The variants are the ones a CUDA user runs: (a) the snnTorch per-step loop; (c) ours
(``create_model("vgg9")``: the fused BNTT+neuron node, per-step batch-norm kernels); (c-triton)
ours with ``backend="triton"`` neurons (BNTT as one batch norm, then the Triton scan: run here
by the torch scan and counted as the Triton kernels' reads and writes, one launch each); (e)
the ReLU ANN over ``T*B``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import ReLUVGG9, SnnTorchVGG9  # noqa: E402

GPUS = {  # name: (HBM bytes/s, dense bf16 FLOP/s)
    "H100 SXM": (3.35e12, 989e12),
    "A100 SXM": (2.0e12, 312e12),
}
ETA_MM, ETA_BW, T_LAUNCH = 0.5, 0.8, 4e-6
MATMUL_OPS = ("convolution", "mm", "addmm", "bmm", "linear")
VIEW_OPS = {"view", "_unsafe_view", "reshape", "as_strided", "select", "slice", "t", "transpose", "unsqueeze",
            "squeeze", "expand", "permute", "detach", "alias", "unbind", "split", "flatten", "unflatten",
            "_reshape_alias", "lift_fresh", "empty", "empty_like", "empty_strided", "new_empty", "zeros_like",
            "ones_like", "new_zeros", "full_like", "zero_", "fill_", "_to_copy_noop"}  # fmt: skip


class ByteCounter(TorchDispatchMode):
    """Per aten op: bytes of tensor inputs + outputs, and the number of calls (kernel launches)."""

    def __init__(self):
        super().__init__()
        self.bytes = defaultdict(int)
        self.calls = defaultdict(int)
        self.paused = False

    def add(self, name: str, nbytes: int) -> None:
        self.bytes[name] += nbytes
        self.calls[name] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if self.paused or name in VIEW_OPS:
            return out
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        self.add(name, sum(t.numel() * t.element_size() for t in tensors))
        return out


@contextmanager
def triton_scan_accounting(counter: ByteCounter):
    """Run the torch scan but count it as the Triton kernels: forward reads x, writes spikes (x's dtype),
    h and the membrane (fp32); backward reads the spike gradient, h and the recomputed membrane
    (fp32), writes the input gradient; one launch each."""
    from bntt_snntorch.kernels.torch_scan import LeakyScan

    forward, backward = LeakyScan.forward, LeakyScan.backward

    def counted_forward(ctx, x_seq, *rest):
        counter.paused = True
        try:
            out = forward(ctx, x_seq, *rest)
        finally:
            counter.paused = False
        counter.add("triton_scan_forward", x_seq.numel() * (2 * x_seq.element_size() + 8))
        return out

    def counted_backward(ctx, grad_spk, grad_mem):
        counter.paused = True
        try:
            out = backward(ctx, grad_spk, grad_mem)
        finally:
            counter.paused = False
        counter.add("triton_scan_backward", out[0].numel() * (2 * out[0].element_size() + 8))
        return out

    LeakyScan.forward, LeakyScan.backward = staticmethod(counted_forward), staticmethod(counted_backward)
    try:
        yield
    finally:
        LeakyScan.forward, LeakyScan.backward = staticmethod(forward), staticmethod(backward)


def count(model, x, labels, triton: bool = False) -> dict:
    """Bytes, FLOPs, launches and saved bytes of one bf16-autocast training step."""
    from bntt_snntorch.profiling import saved_tensor_bytes

    model.train()
    saved = saved_tensor_bytes(model, x, device_type="cpu", dtype=torch.bfloat16).total
    counter, flops = ByteCounter(), FlopCounterMode(display=False)
    scan = triton_scan_accounting(counter) if triton else nullcontext()
    with flops, counter, scan, torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x).float(), labels)
        loss.backward()
    matmul = {k: v for k, v in counter.bytes.items() if any(k.startswith(m) for m in MATMUL_OPS)}
    other = {k: v for k, v in counter.bytes.items() if k not in matmul}
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return dict(
        flops=flops.get_total_flops(),
        matmul_bytes=sum(matmul.values()),
        memory_bound_bytes=sum(other.values()),
        launches=sum(counter.calls.values()),
        top_memory_bound_ops=dict(sorted(other.items(), key=lambda kv: -kv[1])[:8]),
        saved_bytes=saved,
        param_bytes=params,
    )


def unfused_triton_model(T: int):
    """Ours with ``backend="triton"`` neurons: BNTT as one flat batch norm, then the scan (run here by
    the torch scan, counted as the Triton kernels)."""
    from bntt_snntorch import create_model
    from bntt_snntorch.layers import SpikingBlock

    model = create_model("vgg9", num_steps=T)
    for block in model.modules():
        if isinstance(block, SpikingBlock):
            block._fused = lambda cur: False
    return model


def project(c: dict, scale: float, bw: float, peak: float) -> dict:
    mm = c["flops"] * scale / (ETA_MM * peak)
    mem = c["memory_bound_bytes"] * scale / (ETA_BW * bw)
    launch = c["launches"] * T_LAUNCH
    memory = c["saved_bytes"] * scale + 4 * c["param_bytes"]
    return dict(matmul_ms=mm * 1e3, memory_bound_ms=mem * 1e3, launch_ms=launch * 1e3,
                step_ms=(mm + mem + launch) * 1e3, memory_gib=memory / 2**30)  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-steps", type=int, default=25)
    p.add_argument("--count-batch", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    import os

    os.environ["BNTT_COMPILED_KERNELS"] = "0"  # the per-step kernels a GPU runs (compiled ones are CPU-only)
    from bntt_snntorch import create_model

    torch.manual_seed(0)
    T, B = args.num_steps, args.count_batch
    x = (torch.rand(T, B, 3, 32, 32) < 0.2).float()
    labels = torch.randint(0, 10, (B,))
    counts = {
        "a": count(SnnTorchVGG9(T), x, labels),
        "c": count(create_model("vgg9", num_steps=T), x, labels),
        "e": count(ReLUVGG9(T), x, labels),
    }
    counts["c-triton"] = count(unfused_triton_model(T), x, labels, triton=True)
    scale = args.batch_size / B
    # launches do not scale with the batch
    projections = {gpu: {k: project(c, scale, bw, peak) for k, c in counts.items()} for gpu, (bw, peak) in GPUS.items()}
    labels_ = {
        "a": "(a) snnTorch per-step loop",
        "c": "(c) ours, fused BNTT+neuron node (CPU default; on CUDA with backend='torch')",
        "c-triton": "(c-triton) ours, Triton scan (CUDA default)",
        "e": "(e) ReLU ANN over T*B (ceiling)",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(date=time.strftime("%Y-%m-%d"), torch=torch.__version__, command="python benchmarks/gpu_projection.py")
    (out / "gpu-projection.json").write_text(
        json.dumps(dict(meta=meta, counts=counts, projections=projections), indent=2)
    )

    lines = [
        f"# GPU projection: BNTT VGG9, T={T}, batch {args.batch_size}, bf16 autocast — a projection, not a measurement",
        "",
        "No GPU was available to this project. These numbers are computed from op-by-op counts of one training step "
        f"on the CPU (batch {B}, scaled linearly to {args.batch_size}) and stated hardware figures; see the method "
        "below. They rank the variants and show what bounds each; they are not timings.",
        "",
        f"- command: `{meta['command']}`, torch {meta['torch']}, {meta['date']}",
        f"- assumptions: matmul-class ops at {ETA_MM:.0%} of dense bf16 peak; every other op one kernel at "
        f"{ETA_BW:.0%} of HBM bandwidth reading its inputs and writing its outputs; {T_LAUNCH * 1e6:.0f} us a "
        "kernel launch, no CUDA graphs, no overlap of compute and memory time",
        "- hardware: "
        + "; ".join(f"{g}: {bw / 1e12:.2f} TB/s, {pk / 1e12:.0f} TFLOP/s" for g, (bw, pk) in GPUS.items()),
        "",
        f"## Counts per training step (batch {args.batch_size})",
        "",
        "| variant | conv/matmul TFLOP | memory-bound GB moved | kernel launches | saved for backward GiB |",
        "|---|---|---|---|---|",
    ]
    for k, c in counts.items():
        lines.append(
            f"| {labels_[k]} | {c['flops'] * scale / 1e12:.2f} | {c['memory_bound_bytes'] * scale / 1e9:.0f} | "
            f"{c['launches']:,} | {c['saved_bytes'] * scale / 2**30:.2f} |"
        )
    for gpu in GPUS:
        lines += [
            "",
            f"## Projected on {gpu}",
            "",
            "| variant | matmul ms | memory-bound ms | launch ms | **step ms** | **peak memory GiB** | bound by |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, pr in projections[gpu].items():
            bound = max(("matmul", pr["matmul_ms"]), ("memory", pr["memory_bound_ms"]), ("launches", pr["launch_ms"]),
                        key=lambda kv: kv[1])[0]  # fmt: skip
            lines.append(
                f"| {labels_[k]} | {pr['matmul_ms']:.0f} | {pr['memory_bound_ms']:.0f} | {pr['launch_ms']:.0f} | "
                f"**{pr['step_ms']:.0f}** | **{pr['memory_gib']:.1f}** | {bound} |"
            )
    lines += [
        "",
        f"## The memory-bound ops that dominate (ours, counted at batch {B}, GB at batch {args.batch_size})",
        "",
        "| op | GB |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v * scale / 1e9:.0f} |" for k, v in counts["c"]["top_memory_bound_ops"].items()]
    a, c, ct = (projections["H100 SXM"][k] for k in ("a", "c", "c-triton"))
    lines += [
        "",
        "## Reading",
        "",
        f"- On CUDA today ours runs (c-triton): projected {a['step_ms'] / ct['step_ms']:.1f}x the snnTorch loop's "
        f"speed on an H100 with {ct['memory_gib'] / a['memory_gib']:.2f}x its memory. The fused BNTT node (c) keeps "
        f"{c['memory_gib'] / a['memory_gib']:.2f}x the loop's memory but, as per-step kernels, moves the most bytes.",
        "- Both are bound by memory-bound kernels, not convolutions: the next GPU step is one Triton kernel that "
        "normalises and scans (the fused node's saved tensors, the Triton scan's few bytes a neuron-step).",
        "- Not modelled: cuDNN/cuBLAS efficiency at batch 256 vs 6,400 (the loop's convolutions are 25 smaller "
        "calls), caching allocator fragmentation, overlap of kernels, CUDA graphs.",
    ]
    lines += ["", "## Method", "", __doc__.split("Method", 1)[1].split("The variants")[0].strip()]
    (out / "gpu-projection.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gpu-projection.md'}")


if __name__ == "__main__":
    main()
