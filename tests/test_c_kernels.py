"""The C loops of the fused BNTT block (kernels/csrc/bntt.c around the definition's generated functions, built with
the system's C compiler): their statistics, their one-pass training forward and the whole block as one node, bit
for bit; their running statistics; their binding's signature table and checks; how they fall back. (Against the
per-step reference, in both layouts of the loops, with every other backend: tests/test_backends.py.)
"""

import copy
import shutil
import zlib

import pytest
import torch

from bntt_snntorch.kernels import BLOCK_BACKENDS, c_bntt, c_build, c_pool, choose_plan, clear_fallbacks
from bntt_snntorch.kernels.auto_choice import Measurement
from bntt_snntorch.kernels.c_definition import Build
from bntt_snntorch.neurons import bntt_leaky
from bntt_snntorch.profiling import saved_tensor_bytes

from .backends import make_block, make_input
from .helpers import VARIANTS, assert_close

pytestmark = pytest.mark.skipif(shutil.which(c_build.compiler()) is None, reason="no C compiler here")


@pytest.fixture(scope="module")
def shared_builds(tmp_path_factory):
    """A build folder of this module's own: each library built once for all its tests."""
    return tmp_path_factory.mktemp("c-builds")


def _c_loops(monkeypatch, cache):
    monkeypatch.setenv("BNTT_KERNELS", "c")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    c_bntt.library.cache_clear()
    c_pool.library.cache_clear()
    clear_fallbacks()
    yield cache
    c_bntt.library.cache_clear()
    c_pool.library.cache_clear()
    clear_fallbacks()


@pytest.fixture
def c_loops(monkeypatch, shared_builds):
    """BNTT_KERNELS=c, the libraries built into the module's folder."""
    yield from _c_loops(monkeypatch, shared_builds)


@pytest.fixture
def fresh_c_loops(monkeypatch, tmp_path):
    """BNTT_KERNELS=c with an empty build folder of the test's own (nothing built yet: a build is attempted)."""
    yield from _c_loops(monkeypatch, tmp_path / "cache")


@pytest.mark.parametrize("shape", [(5, 7, 3, 4, 6), (5, 7, 3, 9, 9), (5, 7, 3)])  # flat, rows, linear
def test_c_statistics_equal_batch_norms(c_loops, shape):
    x = torch.randn(shape) * 3 + 1
    mean, var = BLOCK_BACKENDS["bntt-c"].statistics(x)
    for t in range(5):
        ref_mean, ref_var = torch.batch_norm_update_stats(x[t], None, None, 0.1)
        assert_close(mean[t], ref_mean, atol=1e-6, rtol=1e-6)
        assert_close(var[t], ref_var, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("shape", [(6, 5, 3, 9, 9), (6, 5, 7, 4, 4), (6, 5, 40), (6, 5, 300)])  # rows, flat, linear
@pytest.mark.parametrize("affine,scale", [(True, 1.0), (True, 0.5), (False, 1.0), (False, 2.0)])
def test_training_forward_with_its_statistics_equals_the_three_calls(c_loops, shape, affine, scale):
    """Training's one-pass forward (statistics, coefficients and neuron a channel at a time) against
    batch_statistics, then the definition's coefficients, then forward: bit for bit, from zero and from a given
    membrane (fresh random input)."""
    from bntt_snntorch.kernels import BlockSpec, Coefficients
    from bntt_snntorch.kernels.torch_scan import NeuronSpec

    gen = torch.Generator().manual_seed(zlib.crc32(repr((shape, affine, scale)).encode()))
    x = torch.randn(shape, generator=gen) * 3 + 1
    T, C = shape[0], shape[2]
    weight = torch.rand(T, C, generator=gen) + 0.5 if affine else None
    mem0 = torch.randn(shape[1:], generator=gen)
    params, build = torch.tensor([0.9, 1.0, 1.0]), Build((0, False, 0), (2, 25.0, 0.0), True)
    for m0 in (None, mem0):
        spk, mem, mean, var, rstd, k, shift = c_bntt.forward_with_statistics(x, weight, 1e-4, scale, m0, params, build)
        ref_mean, ref_var = c_bntt.batch_statistics(x)
        spec = BlockSpec(NeuronSpec.of(bntt_leaky().params()), 1e-4, scale, True)
        ref_k, ref_shift, ref_rstd = Coefficients.of(weight, ref_mean, ref_var, spec)
        ref_spk, ref_mem = c_bntt.forward(x, ref_k.contiguous(), ref_shift, m0, params, build)
        for got, want in [(mean, ref_mean), (var, ref_var), (rstd, ref_rstd), (k, ref_k), (shift, ref_shift),
                          (spk, ref_spk), (mem, ref_mem)]:  # fmt: skip
            assert torch.equal(got, want)
    assert spk.sum() > 0 and (spk == 0).any()  # some neurons fire, some do not
    with pytest.raises(ValueError, match=r"expected float32 gammas of shape \(T, C\)"):
        c_bntt.forward_with_statistics(x, torch.ones(T + 1, C), 1e-4, scale, None, params, build)


@pytest.mark.parametrize(
    "synapse_kind,quantum,affine,learn",
    [("rows", None, True, True), ("rows", 1.0, True, False), ("flat", 0.25, False, True), ("linear", 0.25, True, False),
     ("linear", None, False, False)],
)  # fmt: skip
def test_the_block_node_equals_the_synapse_node_then_the_fused_node(c_loops, synapse_kind, quantum, affine, learn):
    """Training's whole block on the C path as one node (synapse, BNTT, neuron) against the chain it replaces: the
    synapse's gradient node, then the fused node with its own statistics. Bit for bit: spikes, statistics, and
    the gradients of the input, the synapse weight, each gamma and (learnable) leak and threshold, on fresh
    random input; the same bytes saved for backward."""
    from torch import nn

    from bntt_snntorch import BatchNormTT1d, BatchNormTT2d
    from bntt_snntorch.kernels import fused_block, spike_synapse
    from bntt_snntorch.neurons import Leaky
    from bntt_snntorch.surrogate import bntt_triangle

    seed = zlib.crc32(repr((synapse_kind, quantum, affine, learn)).encode())
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    T, B = 4, 5
    if synapse_kind == "linear":
        synapse, shape = nn.Linear(7, 6, bias=False), (T * B, 7)
    else:  # 8x8 maps run the loops over a channel's rows, 4x4 the flat loops
        synapse, shape = nn.Conv2d(3, 6, 3, padding=1, bias=False), (T * B, 3, 8, 8) if synapse_kind == "rows" else (
            T * B, 3, 4, 4)  # fmt: skip
    if quantum is None:
        x = torch.randn(shape, generator=gen)
    else:
        x = torch.randint(0, 5, shape, generator=gen).float() * quantum
    x.requires_grad_()
    norm = (BatchNormTT1d if synapse_kind == "linear" else BatchNormTT2d)(6, T, eps=1e-4, affine=affine)
    gammas = tuple(bn.weight for bn in norm) if affine else ()
    for gamma in gammas:
        gamma.data = torch.rand(6, generator=gen) + 0.5
    surrogate = bntt_triangle(0.3, 1.0)
    neuron = Leaky(0.85, threshold=0.9, spike_grad=surrogate, learn_beta=learn, learn_threshold=learn)
    p = neuron.params()
    cur = spike_synapse.synapse_value(synapse, x)
    scale = 0.5

    statistics = []  # the batch's, as the node returns them to the norm
    norm.packed_running_statistics = lambda *args: None
    norm.record_statistics = lambda x_seq, mean, var, first_step: statistics.append((mean, var))

    def chain():
        value = spike_synapse.with_gradient(synapse, x, cur, quantum).unflatten(0, (T, B))
        return fused_block("bntt-c", value, norm, p, scale)[0], *statistics.pop()

    def node():
        spikes = fused_block("bntt-c", cur.unflatten(0, (T, B)), norm, p, scale, synapse=synapse, x=x,
                             quantum=quantum)[0]  # fmt: skip
        return spikes, *statistics.pop()

    leaves = [x, synapse.weight, *gammas] + ([neuron.beta, neuron.threshold] if learn else [])
    results = []
    for run in (chain, node):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            spikes, mean, var = run()
        weights = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(seed + 1))
        results.append((spikes, mean, var, *torch.autograd.grad(spikes, leaves, weights)))
    for name, got, want in zip(["spikes", "mean", "var", "x", "weight", *["gamma"] * len(gammas), "beta", "theta"],
                               results[1], results[0]):  # fmt: skip
        assert torch.equal(got, want), name
    assert results[0][0].sum() > 0 and (results[0][0] == 0).any()  # some neurons fire, some do not

    class Chain(nn.Module):
        def forward(self, _):
            return chain()[0]

    class Node(nn.Module):
        def forward(self, _):
            return node()[0]

    assert saved_tensor_bytes(Node(), x).total == saved_tensor_bytes(Chain(), x).total > 0


@pytest.mark.parametrize("dims", [2, 1])
def test_running_statistics_updated_in_the_loops_pass_equal_batch_norms_rule(c_loops, monkeypatch, dims):
    """Training's one-pass forward updates the packed running statistics in its own pass: bit for bit what
    record_statistics does after the kernel, over three training calls (T * C = 30 values: not a whole number of
    vectors); where a step's buffer was replaced (no packed table) the block falls back to record_statistics."""
    from bntt_snntorch.bntt import BatchNormTT

    fast = make_block(dims, VARIANTS[0], "triangle")
    slow = copy.deepcopy(fast)
    slow.norm.packed_running_statistics = lambda *args, **kwargs: None  # record_statistics after the kernel
    recorded = []
    record = BatchNormTT.record_statistics
    monkeypatch.setattr(BatchNormTT, "record_statistics", lambda self, *a: recorded.append(self) or record(self, *a))

    def train_and_compare(seed):
        x = make_input(dims, seed)
        assert torch.equal(fast(x), slow(x))
        for (name, a), b in zip(fast.norm.named_buffers(), slow.norm.buffers()):
            assert torch.equal(a, b), name

    for seed in range(3):
        train_and_compare(seed)
    assert fast.__dict__["_kernel_path_taken"] == "bntt-c" and recorded == [slow.norm] * 3
    assert (fast.norm[0].num_batches_tracked == 3).all() and not torch.equal(fast.norm[3].running_var, torch.ones(6))
    for block in (fast, slow):  # a replaced buffer: the statistic is no longer a packed table
        block.norm[2].running_var = block.norm[2].running_var.clone()
    train_and_compare(3)
    assert recorded[3:] == [fast.norm, slow.norm]


def test_c_loops_keep_what_the_eager_node_keeps(c_loops, monkeypatch):
    """One node for every backend: on the C loops it keeps for backward the same tensors as on the eager steps (the
    synapse's input and output, the (T, C) statistics and coefficients, the neuron's parameters)."""
    block = make_block(2, VARIANTS[0], "triangle")
    x = make_input(2, 5)
    c_saved = saved_tensor_bytes(block, x)
    assert block.__dict__["_kernel_path_taken"] == "bntt-c"
    monkeypatch.setenv("BNTT_KERNELS", "eager")
    eager_saved = saved_tensor_bytes(block, x)
    assert block.__dict__["_kernel_path_taken"] == "bntt-eager"
    assert sorted(c_saved.items) == sorted(eager_saved.items) and c_saved.total > x.numel() * 4


def test_c_loops_say_where_they_do_not_run(c_loops):
    p = bntt_leaky().params()
    assert "float32" in BLOCK_BACKENDS["bntt-c"].supports(torch.float64, "cpu", True)
    bf16 = choose_plan(torch.zeros(2, 3, 4, 5, 5, dtype=torch.bfloat16), p, bntt=True)
    assert bf16.path == "bntt-eager" and "float32" in bf16.reason
    assert choose_plan(torch.zeros(2, 3, 4, 5, 5), p, bntt=True).path == "bntt-c"
    assert choose_plan(torch.zeros(2, 3, 4), p, bntt=True).path == "bntt-c"


def test_no_c_compiler_falls_back_to_the_eager_steps_with_one_warning(fresh_c_loops, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_c_loops / "no-such-compiler"))
    fast = make_block(2, VARIANTS[0], "triangle")
    slow = copy.deepcopy(fast)
    x = make_input(2, 3)
    with pytest.warns(UserWarning, match=r"the bntt-c kernels cannot run here \(CBuildError"):
        y = fast(x)
    assert fast.__dict__["_kernel_path_taken"] == "bntt-eager"
    monkeypatch.setenv("BNTT_KERNELS", "eager")
    assert torch.equal(y, slow(x))
    for ran, reference in zip(fast.norm.buffers(), slow.norm.buffers()):  # the failed attempt updated nothing
        assert torch.equal(ran, reference)
    monkeypatch.setenv("BNTT_KERNELS", "c")
    again = choose_plan(torch.zeros(2, 3, 4, 5, 5), bntt_leaky().params(), bntt=True)
    assert again.path == "bntt-eager" and "bntt-c failed before" in again.reason


def test_auto_takes_the_c_loops_where_they_won_by_five_percent():
    assert Measurement(1.0, c_s=0.94).path == "bntt-c" and Measurement(1.0, c_s=0.96).path == "bntt-eager"
    assert Measurement(1.0).path == "bntt-eager"  # the C loops do not apply, or were not built
    assert "eager 60.0 ms, C 20.0 ms a call" in str(Measurement(0.06, c_s=0.02))


def test_auto_without_a_c_compiler_stays_eager_and_quiet(fresh_c_loops, monkeypatch):
    """auto only tries the C loops: without a compiler it measures the eager steps alone, warns nothing,
    and records the failure (later plans skip the C loops)."""
    import warnings

    from bntt_snntorch import create_model
    from bntt_snntorch.kernels import explain

    monkeypatch.setenv("BNTT_KERNELS", "auto")
    monkeypatch.setenv("CC", str(fresh_c_loops / "no-such-compiler"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lines = explain(create_model("bntt_digits", num_steps=2), torch.rand(2, 4, 1, 8, 8))
    assert {line.path for line in lines if line.path.startswith("bntt")} == {"bntt-eager"}
    assert {line.taken for line in lines if line.path.startswith("pool")} == {"pool-torch"}  # its loops: no compiler
    assert choose_plan(torch.zeros(2, 4, 64), bntt_leaky().params(), bntt=True).path == "bntt-eager"
    from bntt_snntorch.kernels.fallback import FALLBACKS

    assert "CBuildError" in FALLBACKS["bntt-c"]


def test_a_failing_build_names_the_compiler_and_its_exit(fresh_c_loops, monkeypatch):
    from bntt_snntorch.kernels.fallback import CBuildError

    monkeypatch.setenv("CC", shutil.which("false") or "false")
    with pytest.raises(CBuildError, match=r"false failed \(exit 1\)"):
        c_build.build(["pool.c"])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_float64_default_dtype_leaves_the_c_loops_float32(c_loops, mode):
    """The loops write float32 into every tensor they allocate, whatever ``torch.set_default_dtype`` says: a
    float32 block run with float64 as the default equals the same block run with float32 as the default (spikes,
    gradients, running statistics, bit for bit)."""
    fast = make_block(2, VARIANTS[0], "triangle")
    if mode == "eval":
        with torch.no_grad():
            fast(make_input(2, 7))
        fast.eval()
    slow = copy.deepcopy(fast)
    x = make_input(2, 3)

    def call(block):
        x_in = x.clone().requires_grad_()
        y = block(x_in)
        (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float32)).sum().backward()
        grads = [p.grad for p in block.parameters() if p.grad is not None]
        return [y.detach(), x_in.grad, *grads, *block.buffers()]

    expected = call(slow)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result = call(fast)
    finally:
        torch.set_default_dtype(previous)
    assert fast.__dict__["_kernel_path_taken"] == "bntt-c"
    assert all(torch.equal(got, want) for got, want in zip(result, expected, strict=True))


def _c_prototypes() -> dict[str, list[tuple[str, str]]]:
    """Every exported function of the C files (``int name(type name, ...)``) with its parameters' names and types."""
    import re

    found = {}
    for path in c_build.CSRC.glob("*.c"):
        for name, params in re.findall(r"^int (\w+)\(([^)]*)\)", path.read_text(), re.M):
            found[name] = [tuple(reversed(p.strip().rsplit(" ", 1))) for p in " ".join(params.split()).split(",")]
    return found


def test_the_signature_table_is_the_c_files_prototypes():
    """Each C function's parameters, names and C types in order, are the table's (``?`` marks a pointer that may be
    NULL): the binding cannot drift from the source."""
    table = {name: [(p, t.rstrip("?").replace("* ", "*")) for p, t in sig] for name, sig in c_build.SIGNATURES.items()}
    prototypes = {name: [(p, t.replace(" *", "*")) for p, t in params] for name, params in _c_prototypes().items()}
    assert prototypes == table


def test_a_call_with_a_wrong_tensor_is_refused_before_the_loops_run(c_loops):
    x = torch.randn(2, 3, 4, 5)
    mean, var = torch.empty(2, 4), torch.empty(2, 4)
    kernels = c_bntt.library(c_bntt.STATISTICS_BUILD)
    with pytest.raises(ValueError, match=r"bntt_stats_flat\(\): expected x a contiguous torch.float32 CPU tensor, got "
                                         r"torch.float64"):  # fmt: skip
        kernels("bntt_stats_flat", x=x.double(), mean=mean, var=var, T=2, B=3, C=4, L=5)
    with pytest.raises(ValueError, match="not contiguous"):
        kernels("bntt_stats_flat", x=x.transpose(0, 1), mean=mean, var=var, T=2, B=3, C=4, L=5)
    with pytest.raises(TypeError, match=r"missing arguments \['var'\]"):
        kernels("bntt_stats_flat", x=x, mean=mean, T=2, B=3, C=4, L=5)


def test_an_allocation_failure_is_a_clear_memory_error(c_loops):
    """The loops check every allocation: one that fails (here 2 TB of scratch for a channel count the call claims)
    stops the kernel, which returns its status, and the call raises a MemoryError saying what to do."""
    kernels = c_bntt.library(c_bntt.STATISTICS_BUILD)
    x, mean, var = torch.zeros(4), torch.zeros(4), torch.zeros(4)
    with pytest.raises(MemoryError, match="could not allocate their working memory: free memory or use a smaller"):
        kernels("bntt_stats_flat", x=x, mean=mean, var=var, T=1, B=1, C=2**38, L=1)
