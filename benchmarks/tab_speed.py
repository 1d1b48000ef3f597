"""TAB's training step against T: the authors' layer (the prefix re-normalised at every step), ours as the module
(prefix moments merged, autograd through them) and ours fused on the block's backend (kernels/fused_tab.py).

    python benchmarks/tab_speed.py                 # conv 64 -> 64, 32x32, B=16, T = 4, 8, 16, 32; run it alone

One block ``Conv2d(64, 64, 3) -> TAB -> Leaky`` on spike input ``(T, 16, 64, 32, 32)``; one training step =
forward, a loss on the spikes, backward. The authors' layer (``HaiyanJiang/SNN-TAB``'s ``TAB_Layer``: step t's
``BatchNorm3d`` over x[0..t]) runs ``T(T+1)/2`` step slices; ours one pass. Best of ``--repeats`` timed steps after a
warm-up, all variants in this process, alternated. Writes ``benchmarks/results/tab-speed-<cpu>.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

from bntt_snntorch import Leaky, create_norm  # noqa: E402
from bntt_snntorch.layers import SpikingBlock  # noqa: E402


class AuthorsTAB(nn.Module):
    """The authors' ``TAB_Layer`` on a time-major ``(T, B, C, H, W)`` sequence: step t's BatchNorm3d over the
    prefix, its step-t slice, times ``p_t^2``."""

    def __init__(self, channels: int, steps: int):
        super().__init__()
        self.bn_list = nn.ModuleList([nn.BatchNorm3d(channels) for _ in range(steps)])
        self.p = nn.Parameter(torch.ones(steps))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        out = [self.bn_list[t](x_seq[: t + 1].movedim(0, 2))[:, :, t] for t in range(x_seq.shape[0])]
        return torch.stack(out) * (self.p**2).view(-1, *[1] * (x_seq.dim() - 1))


def _step(variant: str, steps: int, channels: int, batch: int, size: int):
    torch.manual_seed(0)
    synapse = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    neuron = Leaky(0.9, threshold=1.0)
    if variant == "authors":
        norm = AuthorsTAB(channels, steps)
        block = None
    else:
        norm = create_norm("tab", channels, steps, 2)
        block = SpikingBlock(synapse, norm, neuron)
        if variant == "module":
            neuron.backend = "reference"  # the plan runs the norm's own multi_step, then the neuron
    x = (torch.rand(steps, batch, channels, size, size) < 0.2).float()

    def step():
        if block is not None:
            spikes = block(x)
        else:  # the authors' layer between our synapse and neuron
            cur = synapse(x.flatten(0, 1)).unflatten(0, x.shape[:2])
            spikes = neuron.multi_step(norm(cur))[0]
        spikes.sum().backward()

    return step


VARIANTS = {
    "authors": "the authors' TAB_Layer (prefix re-normalised each step)",
    "module": "ours, the module (prefix moments merged; autograd)",
    "fused": "ours, fused on the block's backend",
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rows = []
    for steps in args.steps:
        runs = {v: _step(v, steps, args.channels, args.batch, args.size) for v in VARIANTS}
        for run in runs.values():
            run()  # warm-up (and auto's measurement of the shape)
        best = dict.fromkeys(VARIANTS, float("inf"))
        for _ in range(args.repeats):
            for v, run in runs.items():
                start = time.perf_counter()
                run()
                best[v] = min(best[v], time.perf_counter() - start)
        rows.append({"T": steps, **{f"{v}_ms": best[v] * 1e3 for v in VARIANTS}})
        print(rows[-1], flush=True)
    capability = torch.backends.cpu.get_cpu_capability()
    meta = {
        "command": "python benchmarks/tab_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": capability,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "block": f"Conv2d({args.channels}, {args.channels}, 3) -> TAB -> Leaky, B={args.batch}, "
        f"{args.size}x{args.size}",
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"tab-speed-{capability.lower()}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# TAB's training step against T: {meta['block']}, fp32",
        "",
        f"`{meta['command'].strip()}` — {capability} CPU, {os.cpu_count()} cores, torch {torch.__version__}; best of "
        f"{args.repeats} steps (forward, a loss on the spikes, backward) after a warm-up, variants alternated.",
        "",
        "| T | "
        + " | ".join(f"{label} (ms)" for label in VARIANTS.values())
        + " | fused vs authors' | fused vs module |",
        "|---|" + "---|" * (len(VARIANTS) + 2),
    ]
    for r in rows:
        times = " | ".join(f"{r[f'{v}_ms']:.0f}" for v in VARIANTS)
        lines.append(
            f"| {r['T']} | {times} | {r['authors_ms'] / r['fused_ms']:.2f}x | {r['module_ms'] / r['fused_ms']:.2f}x |"
        )
    lines += [
        "",
        "The authors' layer normalises T(T+1)/2 step slices a step, ours T: its time per step grows with T, ours "
        "stays flat. Fused: the prefix statistics from the backend's step statistics, the block's forward and backward "
        "on its kernels (the backend auto picks for this shape on this machine).",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return {"rows": rows}


if __name__ == "__main__":
    main()
