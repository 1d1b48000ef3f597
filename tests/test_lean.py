"""What the lean multi-step path keeps for backward, where it runs, and its synapses.

A SpikingBlock with BNTT runs normalisation + neuron as one fused node (kernels/fused_block.py) that
saves only the synapse output; scans save h only; average pooling saves nothing. Every backend of the
node against the per-step reference: tests/test_backends.py. Here: when the fused path is taken, what
each path saves, how a path falls back, and the synapses that keep spikes as int8 codes or take OTTT's
trace (values and gradients against the module's, 1e-5 / 1e-4).
"""

import copy
import zlib

import pytest
import torch
from torch import nn

from bntt_snntorch import Leaky, surrogate
from bntt_snntorch.layers import SpikingBlock, TimeDistributed
from bntt_snntorch.profiling import saved_tensor_bytes

from .backends import make_block, make_input, run
from .helpers import VARIANTS, assert_close


def test_fused_path_is_taken_only_when_it_applies():
    block = make_block(2, VARIANTS[5], "triangle")
    x = make_input(2, 3)
    assert "BNTTLeaky" in type(block(x).grad_fn).__name__
    block.norm[0].momentum = None  # cumulative averaging: the per-step batch norms
    assert "BNTTLeaky" not in type(block(x).grad_fn).__name__
    snn_sg = make_block(2, VARIANTS[5], "triangle")
    from snntorch import surrogate as snn_surrogate

    snn_sg.neuron.spike_grad = snn_surrogate.atan()  # derivative only known to autograd
    assert "BNTTLeaky" not in type(snn_sg(x).grad_fn).__name__


def test_training_statistics_need_more_than_one_value_per_channel():
    block = make_block(1, VARIANTS[5], "triangle")
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        block(torch.randn(4, 1, 7))


def test_average_pool_saves_nothing_and_equals_torch():
    pool = TimeDistributed(nn.AvgPool2d(2))
    x = torch.randn(3, 2, 4, 6, 6, requires_grad=True)
    saved = saved_tensor_bytes(pool, x)
    assert saved.total == 0
    y = pool(x)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    y_ref = nn.functional.avg_pool2d(x_ref.flatten(0, 1), 2).unflatten(0, (3, 2))
    (y_ref * g).sum().backward()
    assert torch.equal(y, y_ref) and torch.equal(x.grad, x_ref.grad)


def test_scan_saves_h_only():
    """The fused scan keeps h (T, B, ...) float32 and nothing else of full size."""
    from bntt_snntorch import MultiStepLeaky

    lif = MultiStepLeaky(0.9, spike_grad=surrogate.atan())
    x = torch.randn(5, 4, 32, requires_grad=True)
    saved = saved_tensor_bytes(lif, x)
    full = [item for item in saved.items if item[3] >= x.numel() * 4]
    assert [(dtype, shape) for _, dtype, shape, _ in full] == [("float32", (5, 4, 32))]


def test_fused_block_saves_the_synapse_output_only():
    """Per BNTT block: the synapse's input and output; the unfused graph kept ~3 more full tensors."""
    block = make_block(2, VARIANTS[5], "triangle")
    x = make_input(2, 1, steps=5, batch=8)
    saved = saved_tensor_bytes(block, x)
    out_bytes = 5 * 8 * 6 * 5 * 5 * 4
    assert saved.total <= x.numel() * 4 + out_bytes + 4096  # + (T, C) statistics and scalars


def test_the_kernel_setting_and_backend_decide_before_any_measurement(monkeypatch):
    from bntt_snntorch.kernels import auto_choice, choose_plan

    p = make_block(2, VARIANTS[5], "triangle").neuron.params()
    x = torch.zeros(2, 4, 8, 4, 4)
    monkeypatch.setattr(auto_choice, "measure_layer", lambda *a: pytest.fail("measured"))
    monkeypatch.setenv("BNTT_KERNELS", "eager")
    assert choose_plan(x, p, bntt=True).path == "bntt-eager"
    monkeypatch.setenv("BNTT_KERNELS", "c")
    assert choose_plan(x, p, bntt=True).path == "bntt-c"
    assert choose_plan(x.double(), p, bntt=True).path == "bntt-eager"  # the C loops take float32
    monkeypatch.delenv("BNTT_KERNELS")
    assert choose_plan(x, p, bntt=True, backend="torch").path == "bntt-eager"
    monkeypatch.setenv("BNTT_KERNELS", "compiled")  # retired: one line that says what to use
    with pytest.raises(ValueError, match="compiled steps were retired .*use auto, c, eager or triton"):
        choose_plan(x, p, bntt=True)


def test_a_bug_in_a_kernel_propagates_instead_of_falling_back(monkeypatch):
    """Only "cannot compile or launch here" falls back: any other error (a wrong shape, say) is a bug."""
    from bntt_snntorch.kernels import BLOCK_BACKENDS
    from bntt_snntorch.kernels import fallback as fallback_module

    def buggy(*args, **kwargs):
        raise RuntimeError("shape '[4, 7]' is invalid for input of size 30")

    monkeypatch.setenv("BNTT_KERNELS", "c")
    monkeypatch.setattr(BLOCK_BACKENDS["bntt-c"], "forward_with_statistics", buggy)
    monkeypatch.setattr(fallback_module, "FALLBACKS", {})
    block = make_block(2, VARIANTS[0], "triangle")
    with pytest.raises(RuntimeError, match="is invalid for input"):
        run(block, make_input(2, 11), True, 11)
    assert fallback_module.FALLBACKS == {}


def test_the_triton_statistics_kernel_is_inside_the_fallback_rule(monkeypatch):
    """A Triton statistics kernel that cannot compile falls back with the block (the running statistics
    updated once); one that raises anything else propagates."""
    from triton.compiler.errors import CompilationError

    from bntt_snntorch import layers
    from bntt_snntorch.kernels import BLOCK_BACKENDS, Plan
    from bntt_snntorch.kernels import fallback as fallback_module

    def failing(error):
        def statistics(x_seq):
            raise error

        return statistics

    monkeypatch.setattr(fallback_module, "FALLBACKS", {})
    monkeypatch.setattr(layers.SpikingBlock, "_plan", lambda self, cur, params, *_: Plan("bntt-triton", "forced"))
    fast = make_block(2, VARIANTS[0], "triangle")
    slow = copy.deepcopy(fast)
    x = make_input(2, 11)
    triton_backend = BLOCK_BACKENDS["bntt-triton"]
    monkeypatch.setattr(triton_backend, "statistics", failing(CompilationError("kernel.py", None, "no sm_90")))
    with pytest.warns(UserWarning, match="bntt-triton kernels cannot run here"):
        y = fast.train()(x)
    assert fast.__dict__["_kernel_path_taken"] == "bntt-eager"
    assert torch.equal(y, slow.train()(x))
    assert torch.equal(fast.norm[0].running_mean, slow.norm[0].running_mean)  # updated once
    monkeypatch.setattr(triton_backend, "statistics", failing(IndexError("index 9 is out of bounds")))
    with pytest.raises(IndexError):
        fast(x)


SYNAPSES = {
    "conv": lambda: nn.Conv2d(4, 6, 3, padding=1, bias=False),
    "conv-strided": lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
    "linear": lambda: nn.Linear(20, 6, bias=False),
}


@pytest.mark.parametrize("kind", SYNAPSES)
@pytest.mark.parametrize("quantum", [1.0, 0.25, 0.03])
def test_spike_synapse_equals_the_module_and_keeps_int8(kind, quantum):
    """Values and input / weight gradients equal the module's (1e-5 / 1e-4); the input is kept as int8."""
    from bntt_snntorch.kernels.spike_synapse import spike_synapse

    torch.manual_seed(zlib.crc32(repr((kind, quantum)).encode()))
    synapse = SYNAPSES[kind]()
    shape = (8, 20) if kind == "linear" else (8, 4, 6, 6)
    x = (torch.randint(-4, 5, shape) * quantum).float().requires_grad_()
    y = spike_synapse(synapse, x, quantum)
    saved = saved_tensor_bytes(synapse, x)  # the module itself, for the comparison below
    g = torch.randn_like(y)
    (y * g).sum().backward()
    gx, gw = x.grad.clone(), synapse.weight.grad.clone()
    x.grad = synapse.weight.grad = None
    y_ref = synapse(x)
    (y_ref * g).sum().backward()
    assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    assert_close(gx, x.grad, atol=1e-5, rtol=1e-4)
    assert_close(gw, synapse.weight.grad, atol=1e-5, rtol=1e-4)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.dtype) or t, lambda t: t):
        spike_synapse(synapse, x, quantum)
    assert torch.int8 in kept and saved.total >= x.numel() * 4  # the module keeps the float input


TRACE_SYNAPSES = {
    **SYNAPSES,
    "conv-grouped": lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2, bias=False),
}


@pytest.mark.parametrize("kind", TRACE_SYNAPSES)
@pytest.mark.parametrize("autocast", [False, True])
def test_trace_synapse_equals_the_two_forward_reference(kind, autocast):
    """OTTT's synapse in one forward: the value is ``synapse(x)``, the input gradient the module's at
    ``x``, the weight gradient the module's at the trace (the two-forward reference: a forward on the
    trace for the gradient, its value replaced); fp32 to 1e-5 / 1e-4, bf16 autocast to 1e-2."""
    from bntt_snntorch.kernels.spike_synapse import trace_synapse
    from bntt_snntorch.layers import _ReplaceForGrad

    torch.manual_seed(zlib.crc32(repr((kind, autocast)).encode()))
    synapse = TRACE_SYNAPSES[kind]()
    shape = (8, 20) if kind == "linear" else (8, 4, 7, 7)
    x = (torch.rand(shape) < 0.3).float().requires_grad_()
    trace = torch.rand(shape) * 2
    tol = dict(atol=1e-2, rtol=1e-2) if autocast else dict(atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = trace_synapse(synapse, x, trace)
        with torch.no_grad():
            value = synapse(x)
        y_ref = _ReplaceForGrad.apply(synapse(_ReplaceForGrad.apply(x, trace)), value)
    assert y.dtype == y_ref.dtype and torch.equal(y, y_ref)
    g = torch.randn(y.shape)
    (y.float() * g).sum().backward()
    gx, gw = x.grad.clone(), synapse.weight.grad.clone()
    x.grad = synapse.weight.grad = None
    (y_ref.float() * g).sum().backward()
    assert gx.dtype == x.dtype and gw.dtype == synapse.weight.dtype
    assert_close(gx, x.grad, **tol)
    assert_close(gw, synapse.weight.grad, **tol)
    assert not torch.allclose(gw, torch.autograd.grad((synapse(x) * g).sum(), synapse.weight)[0])  # not x's


def test_ottt_synapse_with_a_bias_takes_the_two_forward_path_with_the_same_gradients():
    """A synapse trace_synapse does not support (a bias) runs OTTT's two-forward path: the same value and
    weight gradient as trace_synapse on the same weights without the (zero) bias; fp32 to 1e-5 / 1e-4."""
    torch.manual_seed(7)
    plain = SpikingBlock(nn.Conv2d(4, 6, 3, padding=1, bias=False), None, Leaky(beta=0.9))
    biased = copy.deepcopy(plain)
    biased.synapse.bias = nn.Parameter(torch.zeros(6))
    x, trace = (torch.rand(8, 4, 6, 6) < 0.3).float(), torch.rand(8, 4, 6, 6)
    g = torch.randn(8, 6, 6, 6)
    grads = []
    for block in (plain, biased):
        y = block._trace_synapse(x, trace)
        (y * g).sum().backward()
        grads.append((y.detach(), block.synapse.weight.grad))
    assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-4)
    assert_close(grads[1][1], grads[0][1], atol=1e-5, rtol=1e-4)
    assert biased.synapse.bias.grad is not None  # the module's own forward ran


def _quanta(model):
    return [b.input_quantum for b in model.modules() if isinstance(b, SpikingBlock)]


def test_spike_inputs_are_marked_from_the_structure_not_by_the_models():
    """Blocks fed by spikes keep int8 codes; the first block only when the encoding says spikes; a chain
    stops at adaptive pooling or a learnable spike factor. Values and gradients do not change."""
    from bntt_snntorch import create_model
    from bntt_snntorch.layers import mark_spike_inputs

    vgg9 = create_model("vgg9", num_steps=2)
    assert _quanta(vgg9) == [None, 1.0, 0.25, 1.0, 0.25, 1.0, 1.0, 0.25]  # conv x7, fc (after 2x2 pooling)
    mark_spike_inputs(vgg9.features, input_quantum=1.0)
    assert _quanta(vgg9)[0] == 1.0
    assert _quanta(create_model("vgg11", num_steps=2))[-1] is None  # after adaptive pooling: unknown area
    assert _quanta(create_model("rvd_mlp", num_steps=2)) == [None]
    learnable = create_model("bntt_digits", num_steps=2)
    learnable.features[0].neuron.graded_spikes_factor = nn.Parameter(torch.tensor(1.0))
    mark_spike_inputs(learnable.features)
    assert _quanta(learnable)[:2] == [None, None]

    marked = create_model("bntt_digits", num_steps=3)
    mark_spike_inputs(marked.features, input_quantum=1.0)
    plain = copy.deepcopy(marked)
    for block in plain.modules():
        if isinstance(block, SpikingBlock):
            block.input_quantum = None
    x = torch.randint(-1, 2, (3, 8, 1, 8, 8)).float()
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.dtype) or t, lambda t: t):
        y = marked(x)
    assert kept.count(torch.int8) == 5  # every synapse: 4 convs and the fc
    y_ref = plain(x)
    assert torch.equal(y, y_ref)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    for (name, a), b in zip(marked.named_parameters(), plain.parameters()):
        assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_spike_synapse_under_bf16_autocast_equals_the_module():
    from bntt_snntorch.kernels.spike_synapse import spike_synapse

    synapse = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    x = (torch.rand(8, 4, 6, 6) < 0.3).float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_ref = spike_synapse(synapse, x, 1.0), synapse(x)
    assert y.dtype == y_ref.dtype == torch.bfloat16 and torch.equal(y, y_ref)
    y.float().sum().backward()
    gw = synapse.weight.grad.clone()
    synapse.weight.grad = None
    y_ref.float().sum().backward()
    assert gw.dtype == torch.float32
    assert_close(gw, synapse.weight.grad, atol=1e-2, rtol=1e-2)  # both bf16 products, summed in another order
