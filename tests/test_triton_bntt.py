"""The Triton BNTT block's own pieces (kernels/triton_bntt.py: statistics, normalisation and the leaky scan in one
kernel per direction): its currents and last membrane against the reference, the torch.library op torch.compile
sees (no graph break; opcheck), and a whole model on the Triton path against its per-step run. (Against the
per-step reference case by case, with every other backend: tests/test_backends.py.)

The cases run where Triton can: on CUDA, or on CPU under Triton's interpreter, which
tests/test_kernels_interpreted.py starts in a subprocess (``TRITON_INTERPRET=1`` must be set before
Triton is imported). Tolerances (float32): currents and the last membrane 1e-5; the model's logits 1e-4 and its
gradients 1e-4 of their largest entry.
"""

import copy
import os

import pytest
import torch

from .backends import DEVICE, make_block, make_input
from .helpers import VARIANTS, assert_close

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
if not (torch.cuda.is_available() or INTERPRET):
    pytest.skip("needs CUDA or TRITON_INTERPRET=1 (tests/test_kernels_interpreted.py runs it)", allow_module_level=True)


def _block(dims, variant, sg, affine, scale, seed):
    """The harness's block (tests/backends.py) with its neuron's backend set to Triton."""
    block = make_block(dims, variant, sg, affine, scale, seed)
    block.neuron.backend = "triton"
    return block


def _reference_h_and_last_membrane(block, x):
    """The reference's pre-reset membranes ``(T, B, ...)`` and last membrane, from its per-step currents."""
    from bntt_snntorch.kernels.torch_scan import NeuronSpec, NeuronTensors, forward_scan

    p = block.neuron.params()
    with torch.no_grad():
        currents = torch.stack([block.norm.step(block.synapse(x_t), t) * block.input_scale for t, x_t in enumerate(x)])
        tensors, h = NeuronTensors.of(p, x.device), torch.empty_like(currents)
        last = forward_scan(currents.__getitem__, len(x), torch.zeros_like(currents[0]), tensors, NeuronSpec.of(p),
                            dict(h=h))  # fmt: skip
    return h, last, p.threshold.detach()


@pytest.mark.parametrize("variant", [pytest.param(v, id=f"quick-{v.name}") for v in VARIANTS])
def test_currents_and_last_membrane_equal_the_reference(variant):
    """The kernel's normalisation and membrane (1e-5), run from the block's own statistics."""
    from bntt_snntorch.kernels import BLOCK_BACKENDS, BlockSpec, Coefficients, choose_plan, fused_block
    from bntt_snntorch.kernels.torch_scan import NeuronSpec, NeuronTensors
    from bntt_snntorch.kernels.triton_bntt import batch_statistics

    block = _block(2, variant, "atan", True, 0.5, 3).eval()
    x = make_input(2, 5)
    with torch.no_grad():
        cur = block.synapse(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        weight = torch.stack(block.norm.step_gammas(cur))
        mean, var = block.norm.running_statistics(0, cur.shape[0], torch.float32)
        p = block.neuron.params()
        spec = BlockSpec(NeuronSpec.of(p), block.norm[0].eps, 0.5, False)
        k, shift, rstd = Coefficients.of(weight, mean, var, spec)
        reference = torch.stack([block.norm.step(c, t) * 0.5 for t, c in enumerate(cur)])
        spk, last = BLOCK_BACKENDS["bntt-triton"].forward(cur, Coefficients(k, shift, rstd), None,
                                                          NeuronTensors.of(p, x.device), spec, True)  # fmt: skip
        _, last_ref, _ = _reference_h_and_last_membrane(block, x)
        assert_close(last, last_ref, atol=1e-5, rtol=0, msg="last membrane")
        kernel_currents = cur * k[:, None, :, None, None] + shift[:, None, :, None, None]
        assert_close(kernel_currents, reference, atol=1e-5, rtol=0, msg="currents")
        mean_k, var_k = batch_statistics(cur)
        assert_close(mean_k, cur.mean(dim=(1, 3, 4)), atol=1e-5, rtol=1e-5)
        assert_close(var_k, cur.var(dim=(1, 3, 4), unbiased=False), atol=1e-5, rtol=1e-5)
        plan = choose_plan(cur, p, "triton", bntt=True)
        assert plan.path == "bntt-triton"
        assert torch.equal(fused_block(plan.path, cur, block.norm, p, 0.5)[0], spk)


def test_quick_the_block_is_one_custom_op_for_torch_compile():
    """torch.compile traces the block with no graph break: its fused node is one torch.library op."""
    block = _block(2, VARIANTS[5], "triangle", True, 1.0, 0)
    x = make_input(2, 1)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(block)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    code = "\n".join(g.code for g in explanation.graphs)
    assert "bntt_snntorch.fused_bntt_leaky" in code and "bntt-triton" in code


def test_quick_the_custom_op_passes_opcheck():
    from bntt_snntorch.kernels.fused_block import fused_bntt_leaky

    T, B, C, L = 3, 2, 2, 4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, C, L, generator=g).to(DEVICE).requires_grad_()
    weight = (torch.rand(T, C, generator=g) + 0.5).to(DEVICE).requires_grad_()
    beta, theta = (torch.tensor(v, device=DEVICE, requires_grad=True) for v in (0.8, 0.7))
    static = ("bntt-triton", [0, 0, 2], [1.0, 2.0, 0.0], False, 1e-5, 0.5, True, True, False)
    args = (x, weight, None, None, None, beta, theta, torch.tensor(1.0, device=DEVICE), *static)
    torch.library.opcheck(fused_bntt_leaky, args, test_utils=("test_schema", "test_autograd_registration",
                                                               "test_faketensor"))  # fmt: skip


def test_whole_model_on_the_triton_path_equals_its_per_step_run(monkeypatch):
    """bntt_digits with every block on "bntt-triton": logits and gradients as the per-step run's."""
    from bntt_snntorch import create_model
    from bntt_snntorch.kernels import explain

    monkeypatch.setenv("BNTT_KERNELS", "triton")
    torch.manual_seed(0)
    fast = create_model("bntt_digits", num_steps=3).to(DEVICE)
    slow = copy.deepcopy(fast)
    x = (torch.rand(3, 8, 1, 8, 8, device=DEVICE) * 2 - 1).sign() * (torch.rand(3, 8, 1, 8, 8, device=DEVICE) < 0.5)
    assert {line.path for line in explain(fast, x) if line.path.startswith("bntt")} == {"bntt-triton"}
    y_fast, y_slow = fast(x), slow.forward_per_step(x)
    assert_close(y_fast, y_slow, atol=1e-4, rtol=1e-4, msg="logits")
    g = torch.randn_like(y_fast)
    (y_fast * g).sum().backward()
    (y_slow * g).sum().backward()
    for (name, a), b in zip(fast.named_parameters(), slow.parameters()):
        scale_ = b.grad.abs().max().clamp(min=1e-3)
        assert_close(a.grad / scale_, b.grad / scale_, atol=1e-4, rtol=0, msg=name)
