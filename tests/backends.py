"""One harness for every backend of the fused block's table (``bntt_snntorch.kernels.BLOCK_BACKENDS``) against
the per-step reference: a test module parametrises over :data:`BACKENDS` (derived from the table: a new backend
is one entry of it, and one line of :data:`_UNAVAILABLE` where it cannot run everywhere).

The reference is ``block.step`` looped over the steps (BNTT step t, then the snnTorch-semantics neuron step); the
fused run is the block's multi-step call with the plan forced to the backend's path. Compared: spikes, the input's
and every parameter's gradient (synapse weight, gammas, learnable leak and threshold), and the running statistics.

Tolerances (float32): spikes equal wherever the reference's pre-reset membrane is farther than 1e-5 from the
threshold (a rounding difference may flip a spike that sits on it; >= 90 % of them are); the input's gradient 1e-5
abs / 1e-4 rel of its largest entry, every parameter's 1e-4 of its largest entry; running statistics 1e-5 abs /
1e-4 rel. float64: 1e-10 and 1e-9. bf16 (autocast; both sides round the current to bf16, not in the same order):
spikes >= 99 % equal, every gradient as close to the float32 per-step one as the per-step bf16 run is (relative L2
<= 1.25x the reference's + 0.01; Triton: within 25 % of the bf16 run's, :data:`BF16_FACTOR`), the scalar leak's and
threshold's compared in float32 only (sums with heavy cancellation that the bf16 reference itself misses by up to
200 %).
"""

from __future__ import annotations

import copy
import itertools
import shutil
import zlib

import pytest
import torch
from torch import nn

from bntt_snntorch import BatchNormTT1d, BatchNormTT2d, Leaky, create_norm, set_memory, surrogate
from bntt_snntorch.kernels import BLOCK_BACKENDS, Plan
from bntt_snntorch.kernels.c_build import compiler
from bntt_snntorch.kernels.plan import triton_usable
from bntt_snntorch.layers import SpikingBlock

from .helpers import VARIANTS, assert_close, learnable_leaky, rel

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SURROGATES = {
    "triangle": surrogate.bntt_triangle(0.3, 1.0),
    "atan": surrogate.atan(2.0),
    "fast_sigmoid": surrogate.fast_sigmoid(5.0),
    "sigmoid": surrogate.sigmoid(4.0),
    "straight_through": surrogate.straight_through(),
}

#: Why a backend cannot run in this process (None: it can); its cases then run where it can (Triton: in the
#: interpreter's subprocess, tests/test_kernels_interpreted.py, and on a GPU, benchmarks/gpu_check.py).
_UNAVAILABLE = {
    "bntt-c": lambda: None if shutil.which(compiler()) else "no C compiler here",
    "bntt-triton": lambda: (
        None
        if triton_usable(torch.device(DEVICE))
        else "needs CUDA or TRITON_INTERPRET=1 (tests/test_kernels_interpreted.py runs these)"
    ),
}
#: bf16: how much farther from the float32 reference than the bf16 reference a backend's gradients may be (1.25x
#: unless said here; None: within 25 % of the bf16 reference's instead). Triton sums its statistics and the
#: backward's per-channel sums in float32 in another order than batch norm's kernels: 4 % against the bf16
#: reference's 1.1 % in the worst case here (its own module's criterion, since 0.1: 25 %, measured worst 15 %).
BF16_FACTOR = {"bntt-triton": None}
#: TAB's cases compare the neuron's scalar leak and threshold gradients in float64 only (1e-10): in float32 they are
#: sums with heavy cancellation (a threshold gradient of 0.1 from terms of order 10), where TAB's current, rounded
#: as ``k * x + shift`` against the module's ``p^2 * (x * k' + shift' + bias)``, moves them by up to 3e-4 relative.
#: They run the same code as BNTT's, compared in float32 in every BNTT case.
TAB_FLOAT64_ONLY = ("neuron.beta", "neuron.threshold")
#: Every backend of the table, the C loops in both layouts (the cases' 5x5 maps run the flat loops; "rows" forces
#: the loops over a channel's rows).
BACKENDS = [*BLOCK_BACKENDS, "bntt-c:rows"]


def runnable(name: str) -> bool:
    """Whether backend ``name`` can run in this process (else its cases are not collected here)."""
    return _UNAVAILABLE.get(name.split(":")[0], lambda: None)() is None


def forced(monkeypatch, name: str) -> str:
    """Every block planned on backend ``name`` (and the C loops' rows where it says so); returns the path."""
    from bntt_snntorch.kernels import c_bntt

    path, _, layout = name.partition(":")

    def plan(self, cur, params, *_):
        return Plan(path, "forced by the test", self.memory == "low")

    monkeypatch.setattr(SpikingBlock, "_plan", plan)
    if layout == "rows":
        monkeypatch.setattr(c_bntt, "ROW_MIN", 1)
    return path


def supported(name: str, dtype: torch.dtype) -> bool:
    """Whether backend ``name`` runs ``dtype`` input (its own ``supports``, a scalar leak and threshold)."""
    return BLOCK_BACKENDS[name.split(":")[0]].supports(dtype, DEVICE, True) is None


def case_seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


#: (dims, variant, surrogate, affine, input scale): every variant with two surrogates, convolution and linear.
CASES = [
    (dims, v, sg, affine, scale)
    for (dims, v, sg), affine, scale in zip(
        itertools.product((2, 1), VARIANTS, ("triangle", "atan")), itertools.cycle([True, True, False]),
        itertools.cycle([1.0, 0.5]),
    )
]  # fmt: skip


def make_block(dims, variant, sg, affine=True, scale=1.0, seed=0, dtype=torch.float32, norm="bntt") -> SpikingBlock:
    """Conv2d(3 -> 6) or Linear(7 -> 6) -> BNTT (5 steps; ``norm="tab"``: TAB, its weights, biases and ``p``
    drawn) -> a leaky neuron of ``variant`` with learnable leak and threshold and graded spikes 1.5; gammas drawn
    in [0.5, 2]."""
    torch.manual_seed(seed)
    kind, norm = norm, create_norm(norm, 6, 5, dims)
    synapse = nn.Conv2d(3, 6, 3, padding=1, bias=False) if dims == 2 else nn.Linear(7, 6, bias=False)
    if kind == "tab":
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0), norm.bias.uniform_(-0.5, 0.5), norm.p.uniform_(0.7, 1.3)
    elif affine:
        for bn in norm:
            nn.init.uniform_(bn.weight, 0.5, 2.0)
    else:
        norm = (BatchNormTT2d if dims == 2 else BatchNormTT1d)(6, 5, affine=False)
    neuron = learnable_leaky(Leaky, torch.tensor(0.8), torch.tensor(0.9), SURROGATES[sg], variant)
    return SpikingBlock(synapse, norm, neuron, input_scale=scale).to(DEVICE, dtype)


def make_input(dims, seed, steps=4, batch=6, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (steps, batch, 3, 5, 5) if dims == 2 else (steps, batch, 7)
    return (torch.randn(shape, generator=g, dtype=dtype) * 2).to(DEVICE)


def run(block, x, fused: bool, grad_seed: int, amp: bool = False, local: bool = False):
    """``(spikes, input grad, parameter grads, buffers)`` of ``block`` on ``x``: fused (its multi-step call, or with
    ``local`` its online rule's steps: 3, then the rest from the state the first left), or the per-step reference
    (with ``local``, the membrane detached between steps)."""
    x = x.clone().requires_grad_()
    block.zero_grad()
    block.online_rule = "sltt" if local else None
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=amp):
        if fused and local:
            first, state = block.local_steps(x[:3], 0)
            y = torch.cat([first, block.local_steps(x[3:], 3, state)[0]])
        elif fused:
            y = block(x)
            assert type(y.grad_fn).__name__ in ("FusedBNTTLeakyBackward", "FusedTABLeakyBackward"), y.grad_fn
        else:
            state, outs = None, []
            for t, x_t in enumerate(x):
                spk, state = block.step(x_t, t, state)
                outs.append(spk)
            y = torch.stack(outs)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=y.dtype).to(DEVICE)
    (y.to(w.dtype) * w).sum().backward()
    grads = {n: p.grad.clone() for n, p in block.named_parameters() if p.grad is not None}
    return y.detach(), x.grad, grads, {n: b.clone() for n, b in block.named_buffers()}


def reference_h(block, x) -> torch.Tensor:
    """The reference's pre-reset membranes minus the threshold ``(T, B, ...)`` (no gradient)."""
    from bntt_snntorch.kernels.torch_scan import NeuronSpec, NeuronTensors, forward_scan

    p = block.neuron.params()
    with torch.no_grad():
        currents = torch.stack([block.norm.step(block.synapse(x_t), t) * block.input_scale for t, x_t in enumerate(x)])
        state = torch.promote_types(currents.dtype, torch.float32)
        h = torch.empty_like(currents, dtype=state)
        forward_scan(currents.__getitem__, len(x), torch.zeros_like(h[0]), NeuronTensors.of(p, x.device, state),
                     NeuronSpec.of(p), dict(h=h))  # fmt: skip
        return h - p.threshold.detach().to(state)


def assert_matches_reference(fast, slow, h=None, exact=False, local=False):
    """The fused run ``fast`` and the reference run ``slow`` (each :func:`run`'s result) agree at the module's
    tolerances; ``h``: the reference's pre-reset membrane minus threshold (spikes compared away from it);
    ``exact``: float64 (1e-10 / 1e-9)."""
    (y_fast, gx_fast, grads_fast, bufs_fast), (y_slow, gx_slow, grads_slow, bufs_slow) = fast, slow
    atol, rtol = (1e-10, 1e-9) if exact else (1e-4, 1e-4)
    assert y_slow.sum() > 0
    if h is None or exact:
        assert_close(y_fast, y_slow, atol=1e-5 if not exact else 1e-10, rtol=0, msg="spikes")
    else:
        clear = h.abs() > 1e-5
        assert clear.float().mean() > 0.9 and torch.equal(y_fast[clear], y_slow[clear]), "spikes away from threshold"
    scale = gx_slow.abs().max().clamp(min=1e-3)
    assert_close(gx_fast / scale, gx_slow / scale, atol=atol if exact else 1e-5, rtol=rtol, msg="grad input")
    assert grads_fast.keys() == grads_slow.keys() and len(grads_slow) >= 3 - local
    for name, g in grads_slow.items():
        scale = g.abs().max().clamp(min=1e-3)
        assert_close(grads_fast[name] / scale, g / scale, atol=atol, rtol=rtol, msg=f"grad {name}")
    for name, b in bufs_slow.items():
        assert_close(bufs_fast[name].double(), b.double(), atol=1e-10 if exact else 1e-5, rtol=1e-9 if exact else 1e-4,
                     msg=f"buffer {name}")  # fmt: skip


def assert_as_accurate_as_the_reference_in_bf16(fast, slow, exact, factor: float | None = 1.25):
    """bf16: spikes >= 99 % equal to the per-step bf16 run's; every gradient as close to the float32 per-step one
    (``exact``) as the per-step bf16 one is, to ``factor`` (None: within 25 % of the bf16 run's instead); the
    scalar leak and threshold in float32 only (see the module)."""
    (y_fast, gx_fast, grads_fast, bufs_fast), (y_slow, gx_slow, grads_slow, bufs_slow) = fast, slow
    _, gx_exact, grads_exact, _ = exact
    assert y_fast.dtype == torch.bfloat16 and (y_fast == y_slow).float().mean() >= 0.99
    pairs = [("input", gx_fast, gx_slow, gx_exact)]
    pairs += [(n, grads_fast[n], grads_slow[n], g) for n, g in grads_exact.items()
              if n not in ("neuron.beta", "neuron.threshold")]  # fmt: skip
    for name, fused, reference, exact_grad in pairs:
        if factor is None:  # within 25 % of the bf16 reference's (relative L2)
            assert rel(fused, reference) <= 0.25, (name, rel(fused, reference))
        else:
            assert rel(fused, exact_grad) <= factor * rel(reference, exact_grad) + 0.01, name
    for name, b in bufs_slow.items():
        assert_close(bufs_fast[name].float(), b.float(), atol=1e-5, rtol=1e-4, msg=f"buffer {name}")


def check_backend(monkeypatch, name: str, dims, variant, sg, affine, scale, mode, dtype=torch.float32, local=False,
                  norm="bntt", memory="default"):  # fmt: skip
    """The fused run on backend ``name`` against the per-step reference (see the module docstring); ``norm``:
    "bntt" or "tab"; ``memory``: the block's mode (:func:`bntt_snntorch.set_memory`)."""
    if not supported(name, dtype):
        pytest.skip(f"{name} does not take {dtype}")
    path = forced(monkeypatch, name)
    seed = case_seed(name, dims, variant, sg, affine, scale, mode, dtype, local)
    amp = dtype == torch.bfloat16
    exact = dtype == torch.float64
    fast = make_block(dims, variant, sg, affine, scale, seed, torch.float64 if exact else torch.float32, norm)
    set_memory(fast, memory)
    x = make_input(dims, seed, batch=16 if amp else 6, dtype=torch.float64 if exact else torch.float32)
    if mode == "eval":  # non-trivial running statistics first
        with torch.no_grad():
            fast(make_input(dims, seed + 1, dtype=x.dtype))
        fast.eval()
    slow = copy.deepcopy(fast)
    result = run(fast, x, True, seed, amp, local)
    assert fast.__dict__["_kernel_path_taken"] == path
    reference = run(slow, x, False, seed, amp, local)
    if amp:
        float32 = run(copy.deepcopy(slow), x, False, seed, local=local)
        assert_as_accurate_as_the_reference_in_bf16(result, reference, float32, BF16_FACTOR.get(path, 1.25))
    else:
        h = None if local else reference_h(slow, x)
        if norm == "tab" and not exact:  # see TAB_FLOAT64_ONLY
            for grads in (result[2], reference[2]):
                for name in TAB_FLOAT64_ONLY:
                    grads.pop(name)
        assert_matches_reference(result, reference, h, exact=exact, local=local)
