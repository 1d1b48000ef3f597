"""Training and inference throughput of BNTT VGG9 written five ways, plus a Linear+LIF shape.

    python benchmarks/throughput.py                      # CPU defaults: batch 16, T=25
    python benchmarks/throughput.py --batch-size 256     # the GPU setting

Variants (same layer sizes):
  a  snnTorch-native per-step loop: snn.Leaky + snn.BatchNormTT2d, the way an snnTorch user writes it
  b  the original BNTT code's formulation (per-step loop, membrane lists, mask reset), transcribed
  c  ours, multi-step (bntt_snntorch.create_model("vgg9"))
  d  ours + bf16 autocast + torch.compile
  e  the ceiling: the same net as a ReLU ANN over the (T*B) batch (BatchNorm over all steps)
  f  SpikingJelly's BNTT + LIF, multi-step (its default backend; cupy on CUDA for SpikingJelly < 2.0),
     when spikingjelly is installed (pip install -e '.[bench]')
  on-*  the Open Neuromorphic benchmark's shape: Linear + LIF, batch 16, T=500 (16k neurons on GPU)

Each row runs in its own process (peak memory is per row: max RSS on CPU, max allocated on
CUDA). Times are the median of --iters after --warmup. Writes benchmarks/results/<device>.md
and .json with the device, torch version and command; on CPU <device> is cpu-<capability>
(torch.backends.cpu.get_cpu_capability(): cpu-avx2, cpu-avx512), and the header says whether the CPU
has native bf16 (on AVX2-only machines bf16 autocast runs far slower than fp32: benchmarks/results/amp-cpu.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bntt_snntorch.models.bntt_vgg import cfgs  # noqa: E402  (after the path insert)
from bntt_snntorch.utils import cpu_bf16_support  # noqa: E402

VGG9 = cfgs["vgg9"]


# ----------------------------------------------------------------------------- (a) snnTorch-native
class SnnTorchVGG9(nn.Module):
    """VGG9 as an snnTorch user writes it: per-step loop, snn.Leaky, snn.BatchNormTT2d."""

    def __init__(self, num_steps, num_classes=10, image_size=32, beta=0.95):
        import snntorch as snn

        from bntt_snntorch import surrogate

        super().__init__()
        self.num_steps = num_steps
        self.convs, self.bntts, self.lifs, self.pool_after = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), set()
        channels = 3
        for item in VGG9:
            if item == "A":
                self.pool_after.add(len(self.convs) - 1)
                continue
            self.convs.append(nn.Conv2d(channels, item, 3, padding=1, bias=False))
            self.bntts.append(snn.BatchNormTT2d(item, num_steps, eps=1e-4))
            self.lifs.append(snn.Leaky(beta=beta, spike_grad=surrogate.bntt_triangle()))
            channels = item
        self.fc1 = nn.Linear(256 * (image_size // 8) ** 2, 1024, bias=False)
        self.bntt_fc = snn.BatchNormTT1d(1024, num_steps, eps=1e-4)
        self.lif_fc = snn.Leaky(beta=beta, spike_grad=surrogate.bntt_triangle())
        self.fc2 = nn.Linear(1024, num_classes, bias=False)

    def forward(self, x_seq):
        mems = [lif.init_leaky() for lif in self.lifs]
        mem_fc = self.lif_fc.init_leaky()
        out = 0
        for t in range(x_seq.shape[0]):
            h = x_seq[t]
            for i, (conv, bntt, lif) in enumerate(zip(self.convs, self.bntts, self.lifs)):
                h, mems[i] = lif(bntt[t](conv(h)), mems[i])
                if i in self.pool_after:
                    h = F.avg_pool2d(h, 2)
            h, mem_fc = self.lif_fc(self.bntt_fc[t](self.fc1(h.flatten(1))), mem_fc)
            out = out + self.fc2(h)
        return out / x_seq.shape[0]


# ----------------------------------------------------------------------------- (b) original code
class _SpikeAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        out = torch.zeros_like(x)
        out[x > 0] = 1.0
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 0.3 * F.threshold(1.0 - torch.abs(x), 0, 0)


class OriginalVGG9(nn.Module):
    """The BNTT repository's forward, transcribed (membrane lists, SpikeAct, mask reset)."""

    def __init__(self, num_steps, num_classes=10, image_size=32, leak_mem=0.95):
        super().__init__()
        self.num_steps, self.leak_mem, self.image_size = num_steps, leak_mem, image_size
        self.conv_list, self.bntt_list, self.pool_list = nn.ModuleList(), nn.ModuleList(), []
        channels = 3
        for item in VGG9:
            if item == "A":
                self.pool_list[-1] = nn.AvgPool2d(2)
                continue
            self.conv_list.append(nn.Conv2d(channels, item, 3, padding=1, bias=False))
            bntt = nn.ModuleList([nn.BatchNorm2d(item, eps=1e-4, momentum=0.1) for _ in range(num_steps)])
            for bn in bntt:
                bn.bias = None
            self.bntt_list.append(bntt)
            self.pool_list.append(False)
            channels = item
        self.fc1 = nn.Linear((image_size // 8) ** 2 * 256, 1024, bias=False)
        self.bntt_fc = nn.ModuleList([nn.BatchNorm1d(1024, eps=1e-4, momentum=0.1) for _ in range(num_steps)])
        for bn in self.bntt_fc:
            bn.bias = None
        self.fc2 = nn.Linear(1024, num_classes, bias=False)

    def forward(self, inp):
        batch_size, device = inp.size(1), inp.device
        sizes = []
        size = self.image_size
        for conv, pool in zip(self.conv_list, self.pool_list):
            sizes.append((conv.out_channels, size))
            size = size // 2 if pool else size
        mem_conv_list = [torch.zeros(batch_size, c, s, s, device=device) for c, s in sizes]
        mem_fc1 = torch.zeros(batch_size, 1024, device=device)
        mem_fc2 = torch.zeros(batch_size, self.fc2.out_features, device=device)
        for t in range(inp.shape[0]):
            out_prev = inp[t]
            for i in range(len(self.conv_list)):
                mem_conv_list[i] = self.leak_mem * mem_conv_list[i] + self.bntt_list[i][t](self.conv_list[i](out_prev))
                mem_thr = mem_conv_list[i] / 1.0 - 1.0
                out = _SpikeAct.apply(mem_thr)
                rst = torch.zeros_like(mem_conv_list[i])
                rst[mem_thr > 0] = 1.0
                mem_conv_list[i] = mem_conv_list[i] - rst
                out_prev = out.clone()
                if self.pool_list[i] is not False:
                    out_prev = self.pool_list[i](out_prev)
            out_prev = out_prev.reshape(batch_size, -1)
            mem_fc1 = self.leak_mem * mem_fc1 + self.bntt_fc[t](self.fc1(out_prev))
            mem_thr = mem_fc1 / 1.0 - 1.0
            out = _SpikeAct.apply(mem_thr)
            rst = torch.zeros_like(mem_fc1)
            rst[mem_thr > 0] = 1.0
            mem_fc1 = mem_fc1 - rst
            mem_fc2 = mem_fc2 + self.fc2(out.clone())
        return mem_fc2 / self.num_steps


# ----------------------------------------------------------------------------- (e) ReLU ceiling
class ReLUTwin(nn.Module):
    """The ceiling of a spiking model of ours: its layers as a ReLU ANN over the (T*B) batch (each block's
    synapse, then one BatchNorm over all steps and ReLU in place of BNTT and the neuron; pools and
    flatten as they are; the classifier on the mean over steps, as the spiking model reads out). ``our_pools``:
    its average pools as ours run (``TimeDistributed``, on the C loops on the CPU) instead of torch's kernel."""

    def __init__(self, model: nn.Module, our_pools: bool = False):
        super().__init__()
        from bntt_snntorch.layers import SpikingBlock, TimeDistributed

        layers = []
        for layer in model.features:
            if isinstance(layer, SpikingBlock):
                synapse = layer.synapse
                norm = nn.BatchNorm2d if isinstance(synapse, nn.Conv2d) else nn.BatchNorm1d
                width = synapse.out_channels if isinstance(synapse, nn.Conv2d) else synapse.out_features
                layers += [copy.deepcopy(synapse), norm(width), nn.ReLU()]
            elif isinstance(layer, TimeDistributed):
                module = copy.deepcopy(layer.module)
                pool = our_pools and isinstance(module, nn.AvgPool2d)
                layers.append(TimeDistributed(module, step_mode="s") if pool else module)
            else:
                raise TypeError(f"no ReLU twin for {type(layer).__name__}")
        self.body = nn.Sequential(*layers)
        self.classifier = copy.deepcopy(model.classifier)

    def forward(self, x_seq):
        T, B = x_seq.shape[:2]
        return self.classifier(self.body(x_seq.flatten(0, 1)).unflatten(0, (T, B)).mean(0))


def ReLUVGG9(num_steps, num_classes=10, image_size=32):  # noqa: N802 (a model's name)
    """Row (e): BNTT VGG9's ReLU twin."""
    from bntt_snntorch import create_model

    return ReLUTwin(create_model("vgg9", num_steps=num_steps, num_classes=num_classes, image_size=image_size))


# ----------------------------------------------------------------------------- (f) SpikingJelly
def spikingjelly_vgg9(num_steps, num_classes=10, image_size=32):
    from spikingjelly.activation_based import functional, layer, neuron

    def lif():  # soft reset, detached, leak 0.95 (tau = 20, no input decay), SpikingJelly's default surrogate
        kwargs = dict(tau=1 / (1 - 0.95), decay_input=False, v_reset=None, detach_reset=True)
        if "backend" in neuron.LIFNode.__init__.__code__.co_varnames:  # SpikingJelly < 2.0
            kwargs["backend"] = "cupy" if torch.cuda.is_available() else "torch"
        return neuron.LIFNode(**kwargs)

    layers, channels = [], 3
    for item in VGG9:
        if item == "A":
            layers.append(layer.AvgPool2d(2))
        else:
            layers += [
                layer.Conv2d(channels, item, 3, padding=1, bias=False),
                layer.BatchNormThroughTime2d(num_steps, item, eps=1e-4),
                lif(),
            ]
            channels = item
    layers += [
        layer.Flatten(),
        layer.Linear(256 * (image_size // 8) ** 2, 1024, bias=False),
        layer.BatchNormThroughTime1d(num_steps, 1024, eps=1e-4),
        lif(),
        layer.Linear(1024, num_classes, bias=False),
    ]
    net = nn.Sequential(*layers)
    functional.set_step_mode(net, "m")

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x_seq):
            functional.reset_net(self.net)
            return self.net(x_seq).mean(0)

    return Wrapped()


# ----------------------------------------------------------------------------- Linear + LIF
class LinearLIFSnnTorch(nn.Module):
    def __init__(self, n):
        import snntorch as snn

        from bntt_snntorch import surrogate

        super().__init__()
        self.fc = nn.Linear(n, n)
        self.lif = snn.Leaky(beta=0.9, spike_grad=surrogate.atan())

    def forward(self, x_seq):
        mem, out = self.lif.init_leaky(), []
        for x in x_seq:
            spk, mem = self.lif(self.fc(x), mem)
            out.append(spk)
        return torch.stack(out).mean(0)


class LinearLIFOurs(nn.Module):
    def __init__(self, n):
        from bntt_snntorch import MultiStepLeaky

        super().__init__()
        self.fc = nn.Linear(n, n)
        self.lif = MultiStepLeaky(0.9)

    def forward(self, x_seq):
        return self.lif(self.fc(x_seq))[0].mean(0)


# ----------------------------------------------------------------------------- measurement
#: The image shape ``(C, H, W)`` of the models --side-by-side takes besides VGG9 (rows c and e only).
SIDE_BY_SIDE_INPUT = {"bntt_digits": (1, 8, 8)}
ROWS = {
    # name: (label, builder, amp, compile)
    "a": ("(a) snnTorch per-step loop", "snntorch", None, False),
    "a-bf16": ("(a) snnTorch per-step loop, bf16 autocast", "snntorch", "bf16", False),
    "b": ("(b) original BNTT code", "original", None, False),
    "c": ("(c) ours, multi-step", "ours", None, False),
    "c-bf16": ("(c) ours, multi-step, bf16 autocast", "ours", "bf16", False),
    "d": ("(d) ours + bf16 autocast + compile", "ours", "bf16", True),
    "e": ("(e) ceiling: ReLU ANN over T*B", "relu", None, False),
    "e-bf16": ("(e) ceiling: ReLU ANN over T*B, bf16 autocast", "relu", "bf16", False),
    "e-pools": ("(e) ceiling with our pools: ReLU ANN over T*B, pools as (c) runs them", "relu-our-pools", None, False),
    "f": ("(f) SpikingJelly BNTT + LIF, multi-step", "spikingjelly", None, False),
    "f-bf16": ("(f) SpikingJelly BNTT + LIF, multi-step, bf16 autocast", "spikingjelly", "bf16", False),
    "on-a": ("Linear+LIF: snnTorch per-step loop", "on-snntorch", None, False),
    "on-c": ("Linear+LIF: ours, MultiStepLeaky", "on-ours", None, False),
}


def build(kind, args):
    from bntt_snntorch import create_model

    if kind == "snntorch":
        return SnnTorchVGG9(args.num_steps)
    if kind == "original":
        return OriginalVGG9(args.num_steps)
    if kind == "ours":  # VGG9's input is spikes, as Poisson coding gives: training marks it the same way
        from bntt_snntorch.layers import mark_spike_inputs

        model = create_model(args.arch, num_steps=args.num_steps)
        if args.arch == "vgg9":
            mark_spike_inputs(model.features, input_quantum=1.0)
        return model
    if kind in ("relu", "relu-our-pools"):
        return ReLUTwin(create_model(args.arch, num_steps=args.num_steps), our_pools=kind == "relu-our-pools")
    if kind == "spikingjelly":
        return spikingjelly_vgg9(args.num_steps)
    if kind == "on-snntorch":
        return LinearLIFSnnTorch(args.on_neurons)
    return LinearLIFOurs(args.on_neurons)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, device, warmup, iters):
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_row(row: str, args) -> dict:
    """Time one row in this process: train step (fwd+bwd+SGD) and inference."""
    label, kind, amp, compile_ = ROWS[row]
    device = torch.device(args.device)
    if not args.default_allocator:
        from bntt_snntorch.utils import tune_cpu_allocator

        tune_cpu_allocator()
    torch.manual_seed(0)
    model = build(kind, args).to(device)
    run = torch.compile(model, dynamic=False) if compile_ else model
    linear = kind.startswith("on-")
    T, B = (args.on_steps, args.on_batch) if linear else (args.num_steps, args.batch_size)
    shape = (T, B, args.on_neurons) if linear else (T, B, 3, 32, 32)
    x = (torch.rand(shape, device=device) < 0.2).float()
    labels = torch.randint(0, args.on_neurons if linear else 10, (B,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, foreach=True)  # as train.py steps
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else torch.enable_grad

    def train_step():
        with ctx():
            loss = F.cross_entropy(run(x).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer():
        with ctx():
            run(x)

    if not linear:  # load / compile what the row runs (compiled kernels, allocator pools) at batch 2
        with ctx():
            F.cross_entropy(run(x[:, :2]).float(), labels[:2]).backward()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model.train()
    train_s = _median_time(train_step, device, args.warmup, args.iters)
    train_peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    peak = (
        train_peak if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    )
    if args.train_only:
        return dict(row=row, batch=B, train_s=train_s, peak_mem_mib=peak / 2**20)
    model.eval()
    infer_s = _median_time(infer, device, args.warmup, args.iters)
    model.train()
    saved = None if compile_ else saved_backward_bytes(model, x, device, amp)
    result = dict(
        row=row,
        label=label,
        batch=B,
        steps=T,
        train_s=train_s,
        infer_s=infer_s,
        train_img_s=B / train_s,
        infer_img_s=B / infer_s,
        peak_mem_mib=peak / 2**20,
        saved_mib=None if saved is None else saved / 2**20,
        peak_kind="max allocated (CUDA)"
        if device.type == "cuda"
        else "growth of the process's max RSS over the run (model, libraries and one warm-up step at batch 2 "
        "excluded: what the row compiles or loads is not counted)",
    )
    if args.profile:
        model.train()
        with torch.profiler.profile() as prof:
            train_step()
        result["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return result


def side_by_side(rows: list[str], args, rounds: int) -> dict:
    """The train steps of ``rows`` (fp32 rows without compile) in this process, alternated one step each a
    round after ``args.warmup`` steps each, so that a slow spell of the machine hits all of them; returns
    ``{row: {"label", "train_ms" (the fastest step), "train_img_s", "paths", "paired_speed"}}`` (``paths``: the
    kernel path each spiking block took, by name; ``paired_speed``: the median over the rounds of the last row's
    step time over this row's in the same round, steadier than the fastest steps' ratio where the machine's
    speed drifts)."""
    from bntt_snntorch.utils import tune_cpu_allocator

    tune_cpu_allocator()
    device = torch.device(args.device)
    T, B = args.num_steps, args.batch_size
    torch.manual_seed(0)
    if args.arch == "vgg9":  # Poisson-like spikes
        x = (torch.rand(T, B, 3, 32, 32, device=device) < 0.2).float()
    else:  # the digits default: direct coding, the image at every step
        x = torch.randn(1, B, *SIDE_BY_SIDE_INPUT[args.arch], device=device).expand(T, -1, -1, -1, -1)
    labels = torch.randint(0, 10, (B,), device=device)
    steps, models = {}, {}
    for row in rows:
        model = models[row] = build(ROWS[row][1], args).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, foreach=True)  # as train.py steps

        def step(model=model, opt=opt):
            loss = F.cross_entropy(model(x), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[row] = step
    for row in rows:
        for _ in range(args.warmup):
            steps[row]()
    best = dict.fromkeys(rows, float("inf"))
    paired = {row: [] for row in rows}  # each round's step time over the last row's in the same round
    for _ in range(rounds):
        took = {}
        for row in rows:
            _sync(device)
            start = time.perf_counter()
            steps[row]()
            _sync(device)
            took[row] = time.perf_counter() - start
            best[row] = min(best[row], took[row])
        for row in rows:
            paired[row].append(took[rows[-1]] / took[row])
    from bntt_snntorch.kernels import auto_choice

    found = {
        row: dict(label=ROWS[row][0], train_ms=best[row] * 1e3, train_img_s=B / best[row], paths=_paths(models[row]),
                  paired_speed=statistics.median(paired[row]))
        for row in rows
    }  # fmt: skip
    # auto's timings behind the paths (this process's, or the machine's file it read)
    keys = [(k.split("|"), m) for k, m in auto_choice._CHOICES.items()]  # machine|torch|paths|dtype|shape|mode
    here = torch.backends.cpu.get_cpu_capability()
    shape = f"{T}x{B}x"  # this model's layers: T steps of batch B
    found[rows[0]]["measured"] = {
        p[4]: str(m) for p, m in keys if p[0] == here and p[4].startswith(shape) and p[5] == "train" and len(p) == 6
    }
    return found


def _paths(model) -> dict:
    """The kernel path each spiking block of ``model`` took last (empty for a model without them)."""
    return {name: m.__dict__["_kernel_path_taken"] for name, m in model.named_modules()
            if "_kernel_path_taken" in m.__dict__}  # fmt: skip


def write_side_by_side(found: dict, args, out_dir: Path) -> Path:
    """``side-by-side-<device>.md`` / ``.json``: the rows' fastest train steps and their speed over the last row's."""
    import os

    name, slug = device_name(torch.device(args.device))
    emulated = os.environ.get("ATEN_CPU_CAPABILITY")
    if emulated:  # another ISA's kernels on this CPU (e.g. AVX2 on an AVX-512 machine): named as such
        flags = ", ".join(f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                           "MKL_ENABLE_INSTRUCTIONS") if k in os.environ)  # fmt: skip
        name, slug = f"{name} (kernels limited: {flags}; this CPU's memory and clock)", f"{slug}-emulated"
    if args.arch != "vgg9":
        name, slug = f"{name}, {args.arch}", f"{args.arch}-{slug}"
    rows = list(found)
    ceiling = found[rows[-1]]["train_img_s"]
    meta = dict(
        device=name,
        torch=torch.__version__,
        date=time.strftime("%Y-%m-%d"),
        command="python benchmarks/throughput.py " + " ".join(sys.argv[1:]),
        bntt_kernels=os.environ.get("BNTT_KERNELS", "auto"),
        rounds=args.rounds,
    )
    model_label = "VGG9 (spike input)" if args.arch == "vgg9" else f"{args.arch} (direct input)"
    lines = [
        f"# Side by side on {name}", "",
        f"- torch {meta['torch']}, {meta['date']}; command: `{meta['command']}`; BNTT_KERNELS={meta['bntt_kernels']}",
        f"- one process: {model_label}, T={args.num_steps}, batch {args.batch_size}, fp32, train step = forward + "
        f"backward + SGD (foreach, as train.py's); after {args.warmup} warm-up steps each (compiles and auto's "
        "measurements happen there), "
        f"the rows' steps alternate for {args.rounds} rounds; the fastest step of each is reported, and the "
        "median over the rounds of each round's speed over the last row (the two steps of a round run at the same "
        "machine speed)", "",
        "| row | fastest train step (ms) | train img/s | speed over the last row (fastest steps) | "
        "speed over the last row (median of the rounds) |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for r in found.values():
        lines.append(f"| {r['label']} | {r['train_ms']:.0f} | {r['train_img_s']:.2f} | "
                     f"**{r['train_img_s'] / ceiling:.2f}x** | **{r['paired_speed']:.2f}x** |")  # fmt: skip
    for r in found.values():
        if r.get("paths"):
            lines += ["", f"Kernel paths of {r['label']}: " + ", ".join(f"{n} {p}" for n, p in r["paths"].items())]
        if r.get("measured"):
            lines += [
                "",
                "BNTT_KERNELS=auto's timings of one training call at each layer's shape (T x B x C x ...):",
                "",
            ]
            lines += [f"- {shape}: {m}" for shape, m in r["measured"].items()]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"side-by-side-{slug}.md"
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(dict(meta=meta, rows=found), indent=1) + "\n")
    return path


def saved_backward_bytes(model, x, device, amp) -> int:
    """Bytes autograd keeps for backward in one training forward (bntt_snntorch.profiling)."""
    from bntt_snntorch.profiling import saved_tensor_bytes

    autocast = dict(device_type=device.type, dtype=torch.bfloat16) if amp else {}
    return saved_tensor_bytes(model, x, **autocast).total


def largest_batch(row: str, args) -> dict:
    """The largest training batch of ``row`` whose peak memory fits ``--memory-budget-gib``.

    Peak memory is affine in the batch: measured at two batches (8 and 16), solved for the
    budget, then the solution is run once to check it fits (stepping down 5 % until it does).
    """
    budget = args.memory_budget_gib * 1024

    def peak(batch: int) -> float:
        cmd = [sys.executable, __file__, "--single", row, "--train-only", "--batch-size", str(batch)]
        cmd += ["--iters", "1", "--warmup", "0", "--num-steps", str(args.num_steps), "--device", args.device]
        cmd += ["--default-allocator"] if args.default_allocator else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mem_mib"]

    p8, p16 = peak(8), peak(16)
    per_sample = (p16 - p8) / 8
    batch = int((budget - (p16 - 16 * per_sample)) / per_sample)
    checked = peak(batch)
    while checked > budget:
        batch = int(batch * 0.95)
        checked = peak(batch)
    return dict(row=row, label=ROWS[row][0], mib_per_sample=per_sample, batch=batch, peak_mem_mib=checked)


def kernel_report() -> list[dict]:
    """Registers and spills of the Triton kernels the BNTT VGGs use (leaky scan and fused BNTT block, the seed
    neuron and snnTorch's default), compiled for sm_80 / sm_90."""
    import triton_aot  # benchmarks/triton_aot.py, beside this script

    from bntt_snntorch.definition import Variant

    rows = []
    for variant in (Variant("subtract", False, "detached"), Variant("subtract", True, "none")):
        for dtype in ("fp32", "bf16"):
            for cap in (80, 90):
                for kind, source in (
                    ("scan forward", triton_aot.scan_forward_source(variant, dtype)),
                    ("scan backward", triton_aot.scan_backward_source(variant, "triangle", dtype)),
                    ("bntt forward", triton_aot.bntt_forward_source(variant, dtype)),
                    ("bntt backward", triton_aot.bntt_backward_source(variant, "triangle", dtype)),
                ):
                    usage = triton_aot.ptxas_usage(triton_aot.compile_for(source, cap), cap)
                    rows.append(dict(kernel=kind, mode=variant.name, dtype=dtype, sm=cap, **usage))
    return rows


def device_name(device: torch.device) -> tuple[str, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        model = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
            platform.processor(),
        )
        native_bf16, capability = cpu_bf16_support()
        bf16 = {True: "native bf16", False: "no native bf16", None: "bf16 support unknown"}[native_bf16]
        name = f"{model}, {torch.get_num_threads()} threads, {capability}, {bf16}"
        return name, f"cpu-{capability.lower()}"  # ratios are compared within one file: one machine, one run
    return name, re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _ratio(by: dict, a: str, b: str, key: str, inverse: bool = False):
    if a not in by or b not in by or by[a].get(key) is None or by[b].get(key) is None:
        return None
    return by[b][key] / by[a][key] if inverse else by[a][key] / by[b][key]


def check_targets(by: dict, device_type: str) -> list[str]:
    """The issue's targets, each 'met' or 'MISSED by X%'. Speed: ratios of images/s (higher is
    better); memory: ours / snnTorch loop (lower is better)."""
    if device_type == "cpu":
        wanted = [
            ("peak RSS growth, ours <= 0.6x (a), fp32", _ratio(by, "c", "a", "peak_mem_mib"), 0.6, "max"),
            ("peak RSS growth, ours <= 0.6x (a), bf16", _ratio(by, "c-bf16", "a-bf16", "peak_mem_mib"), 0.6, "max"),
            ("saved for backward, ours <= 0.6x (a), fp32", _ratio(by, "c", "a", "saved_mib"), 0.6, "max"),
            ("saved for backward, ours <= 0.6x (a), bf16", _ratio(by, "c-bf16", "a-bf16", "saved_mib"), 0.6, "max"),
            ("train, ours >= 0.95x ReLU ceiling (e), fp32", _ratio(by, "c", "e", "train_img_s"), 0.95, "min"),
            ("train, ours >= 0.95x ReLU ceiling (e), bf16", _ratio(by, "c-bf16", "e-bf16", "train_img_s"), 0.95, "min"),
            ("inference, ours >= 0.95x (e), fp32", _ratio(by, "c", "e", "infer_img_s"), 0.95, "min"),
            ("inference, ours >= 0.95x (e), bf16", _ratio(by, "c-bf16", "e-bf16", "infer_img_s"), 0.95, "min"),
            ("train, ours >= 1.3x (a), both bf16", _ratio(by, "c-bf16", "a-bf16", "train_img_s"), 1.3, "min"),
            ("train, ours >= SpikingJelly (f), both bf16", _ratio(by, "c-bf16", "f-bf16", "train_img_s"), 1.0, "min"),
        ]
    else:
        wanted = [
            ("ours >= 10x (a)", _ratio(by, "c", "a", "train_img_s"), 10.0, "min"),
            ("ours within 1.3x of the ReLU ceiling (e)", _ratio(by, "c", "e", "train_img_s"), 1 / 1.3, "min"),
            ("ours faster than SpikingJelly (f)", _ratio(by, "c", "f", "train_img_s"), 1.0, "min"),
            ("peak memory <= 0.6x (a)", _ratio(by, "c", "a", "peak_mem_mib"), 0.6, "max"),
        ]
    lines = []
    for text, value, goal, kind in wanted:
        if value is None:
            lines.append(f"{text}: not measured")
        elif (value >= goal) if kind == "min" else (value <= goal):
            lines.append(f"{text}: met ({value:.2f} vs {goal:.2f})")
        else:
            miss = (1 - value / goal) if kind == "min" else (value / goal - 1)
            lines.append(f"{text}: MISSED by {100 * miss:.0f}% ({value:.2f} vs {goal:.2f}); see the notes below")
    return lines


def write_results(results, args, out_dir: Path, sweep=None, kernels=None, notes=None):
    device = torch.device(args.device)
    name, slug = device_name(device)
    slug += "-default-allocator" if args.default_allocator and device.type == "cpu" else ""
    command = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    by = {r["row"]: r for r in results if "error" not in r}
    ratios = {}
    for num, den, key in [
        ("c", "a", "c/a fp32"),
        ("c-bf16", "a-bf16", "c/a bf16"),
        ("d", "a-bf16", "d/a bf16"),
        ("d", "a", "d/a"),
        ("c", "e", "c/e fp32"),
        ("c-bf16", "e-bf16", "c/e bf16"),
        ("c", "b", "c/b"),
        ("c", "f", "c/f"),
        ("c-bf16", "f-bf16", "c/f bf16"),
        ("on-c", "on-a", "Linear+LIF ours/snnTorch"),
    ]:
        if num in by and den in by:
            ratios[key] = by[num]["train_img_s"] / by[den]["train_img_s"]
    meta = dict(
        device=name,
        torch=torch.__version__,
        command=command,
        date=time.strftime("%Y-%m-%d"),
        python=platform.python_version(),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = dict(meta=meta, results=results, train_ratios=ratios, sweep=sweep, kernels=kernels, notes=notes)
    (out_dir / f"{slug}.json").write_text(json.dumps(saved, indent=2))
    lines = [
        f"# Throughput on {name}",
        "",
        f"- torch {torch.__version__}, Python {meta['python']}, {meta['date']}",
        f"- command: `{command}`",
        "- train = forward + backward + SGD step (foreach, as train.py's); median of "
        f"{args.iters} after {args.warmup} warm-up; peak memory: {results[0].get('peak_kind', '')}",
        "- allocator: "
        + (
            "glibc defaults"
            if args.default_allocator
            else "bntt_snntorch.utils.tune_cpu_allocator() in every row (as train.py does)"
        ),
        "",
        "- saved for backward: bytes autograd keeps after one training forward "
        "(bntt_snntorch.profiling.saved_tensor_bytes; not measured through torch.compile)",
        "",
        "| variant | batch | T | train img/s | inference img/s | peak MiB | saved for backward MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {ROWS[r['row']][0]} | – | – | not run: {r['error']} | | | |")
        else:
            saved_mib = "–" if r.get("saved_mib") is None else f"{r['saved_mib']:.0f}"
            lines.append(
                f"| {r['label']} | {r['batch']} | {r['steps']} | {r['train_img_s']:.1f} | "
                f"{r['infer_img_s']:.1f} | {r['peak_mem_mib']:.0f} | {saved_mib} |"
            )
    lines += ["", "Train-step speed ratios:", ""] + [f"- {k}: **{v:.2f}x**" for k, v in ratios.items()]
    lines += ["", "Targets (issue 16):", ""] + [f"- {t}" for t in check_targets(by, device.type)]
    if sweep:
        lines += [
            "",
            f"Largest training batch within a {args.memory_budget_gib:g} GiB budget (peak RSS growth; affine fit "
            "from batches 8 and 16, the answer run once to check):",
            "",
            "| variant | MiB per sample | largest batch | its measured peak MiB |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['label']} | {r['mib_per_sample']:.1f} | **{r['batch']}** | {r['peak_mem_mib']:.0f} |" for r in sweep
        ]
    if kernels:
        lines += [
            "",
            "Triton scan kernels compiled ahead of time (no GPU; `ptxas -v` from Triton's wheel), BLOCK per program "
            "as shipped:",
            "",
            "| kernel | mode | dtype | sm | registers | spill stores | spill loads |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {k['kernel']} | {k['mode']} | {k['dtype']} | {k['sm']} | {k['registers']} | {k['spill_stores']} | "
            f"{k['spill_loads']} |"
            for k in kernels
        ]
    if notes:
        lines += ["", "## Notes", "", Path(notes).read_text().strip()]
    for r in results:
        if "profile" in r:
            lines += ["", f"Profile of one train step, {r['label']}:", "", "```", r["profile"], "```"]
    (out_dir / f"{slug}.md").write_text("\n".join(lines) + "\n")
    return out_dir / f"{slug}.md"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=256 if torch.cuda.is_available() else 16)
    p.add_argument("--num-steps", type=int, default=25)
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows: " + ",".join(ROWS))
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--on-neurons", type=int, default=16384 if torch.cuda.is_available() else 2048)
    p.add_argument("--on-steps", type=int, default=500)
    p.add_argument("--on-batch", type=int, default=16)
    p.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc malloc as is (default: bntt_snntorch.utils.tune_cpu_allocator() for every row)",
    )
    p.add_argument("--profile", action="store_true", help="add a torch.profiler table of one train step per row")
    p.add_argument(
        "--memory-budget-gib",
        type=float,
        default=None,
        help="also find the largest training batch within this budget for --sweep-rows",
    )
    p.add_argument("--sweep-rows", default="a,c,a-bf16,c-bf16", help="rows of the --memory-budget-gib sweep")
    p.add_argument("--kernel-report", action="store_true", help="add registers / spills of the Triton kernels")
    p.add_argument("--notes", help="a markdown file appended to the results as their notes (shortfalls explained)")
    p.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--from-json", help="rewrite the .md of an existing results .json (no measuring)")
    p.add_argument("--single", help=argparse.SUPPRESS)
    p.add_argument(
        "--side-by-side",
        metavar="ROWS",
        help="fp32 rows (e.g. c,e) timed in one process, alternated; writes side-by-side-<device>.md, speed over "
        "the last row",
    )
    p.add_argument("--rounds", type=int, default=5, help="alternated steps per row with --side-by-side")
    p.add_argument(
        "--arch",
        default="vgg9",
        choices=["vgg9", *SIDE_BY_SIDE_INPUT],
        help="the model of rows c and e with --side-by-side: VGG9 on spikes, or the digits net on direct input",
    )
    args = p.parse_args(argv)
    if args.side_by_side:
        found = side_by_side(args.side_by_side.split(","), args, args.rounds)
        print(json.dumps(found, indent=1))
        print(f"wrote {write_side_by_side(found, args, Path(args.out))}")
        return
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        sys.argv = saved["meta"]["command"].split()[1:]
        old = p.parse_args(sys.argv[1:])
        old.notes = args.notes or old.notes
        path = write_results(saved["results"], old, Path(args.out), saved.get("sweep"), saved.get("kernels"), old.notes)
        print(f"wrote {path}")
        return
    if args.single:
        print(json.dumps(measure_row(args.single, args)))
        return
    results = []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    for row in args.rows.split(","):
        if row.startswith("f"):
            try:
                import spikingjelly  # noqa: F401
            except ImportError:
                results.append(dict(row=row, error="spikingjelly not installed (pip install -e '.[bench]')"))
                print(f"{row}: skipped, spikingjelly not installed", flush=True)
                continue
        proc = subprocess.run([sys.executable, __file__, *forwarded, "--single", row], capture_output=True, text=True)
        if proc.returncode != 0:
            results.append(dict(row=row, error=proc.stderr.strip().splitlines()[-1][:200] if proc.stderr else "failed"))
            print(f"{row}: failed: {results[-1]['error']}", flush=True)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{r['label']:<48} train {r['train_img_s']:8.1f} img/s   inference {r['infer_img_s']:8.1f} img/s   "
            f"peak {r['peak_mem_mib']:.0f} MiB",
            flush=True,
        )
    sweep = None
    if args.memory_budget_gib:
        sweep = []
        for row in args.sweep_rows.split(","):
            sweep.append(largest_batch(row, args))
            print(f"{sweep[-1]['label']:<48} largest batch {sweep[-1]['batch']} in {args.memory_budget_gib:g} GiB")
    kernels = kernel_report() if args.kernel_report else None
    path = write_results(results, args, Path(args.out), sweep, kernels, args.notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
