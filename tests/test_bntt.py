"""BatchNormTT1d/2d against the per-step loop and snnTorch's BatchNormTT (tolerance 1e-5 abs/rel, float32)."""

import copy

import pytest
import snntorch as snn
import torch

from bntt_snntorch import BatchNormTT1d, BatchNormTT2d

from .helpers import assert_close

CASES = [
    (BatchNormTT2d, snn.BatchNormTT2d, (2, 5, 4)),  # step shape without C: (B, H, W) -> (B, C, H, W)
    (BatchNormTT1d, snn.BatchNormTT1d, (4,)),  # (B, C)
    (BatchNormTT1d, snn.BatchNormTT1d, (3, 6)),  # (B, C, L)
]


def _step_shape(dims, C):
    return (dims[0], C, *dims[1:])


def _randomize(bn):
    with torch.no_grad():
        for m in bn:
            m.weight.uniform_(0.2, 2.0)
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return bn


def test_snntorch_compatible_container():
    bn = BatchNormTT2d(8, 5)
    ref = snn.BatchNormTT2d(8, 5)
    assert len(bn) == 5
    assert all(isinstance(m, torch.nn.BatchNorm2d) and m.bias is None for m in bn)
    assert set(bn.state_dict()) == set(ref.state_dict())
    assert all(m.eps == r.eps == 1e-5 and m.momentum == r.momentum == 0.1 for m, r in zip(bn, ref))
    assert all("bias" not in name for name, _ in bn.named_parameters())


@pytest.mark.parametrize("cls,snn_cls,dims", CASES)
def test_loads_snntorch_state_dict_and_matches_per_step(cls, snn_cls, dims):
    C, T = 6, 4
    ref = _randomize(snn_cls(C, T))  # both with their default eps
    bn = cls(C, T)
    bn.load_state_dict(ref.state_dict())
    for mode in ("train", "eval"):
        bn.train(mode == "train"), ref.train(mode == "train")
        for t in range(T):
            x = torch.randn(_step_shape(dims, C)) * 3 + 1
            assert_close(bn(x, t), ref[t](x), msg=f"{mode} t={t}")
            assert_close(bn[t].running_mean, ref[t].running_mean)


@pytest.mark.parametrize("cls,_snn,dims", CASES)
@pytest.mark.parametrize("steps", [4, 2])
@pytest.mark.parametrize("train", [True, False])
def test_multistep_equals_per_step_loop(cls, _snn, dims, steps, train):
    C, T = 5, 4
    fast = _randomize(cls(C, T, step_mode="m")).train(train)
    slow = copy.deepcopy(fast)
    x = torch.randn(steps, *_step_shape(dims, C)) * 2 + 0.5
    x_fast = x.clone().requires_grad_()
    x_slow = x.clone().requires_grad_()
    y_fast = fast(x_fast)
    y_slow = torch.stack([slow.step(x_slow[t], t) for t in range(steps)])
    assert y_fast.shape == x.shape
    assert_close(y_fast, y_slow, msg="forward")
    g = torch.randn_like(y_fast)
    (y_fast * g).sum().backward()
    (y_slow * g).sum().backward()
    assert_close(x_fast.grad, x_slow.grad, msg="input grad")
    for t in range(T):
        if t < steps:
            assert_close(fast[t].weight.grad, slow[t].weight.grad, msg=f"gamma grad t={t}")
        else:
            assert fast[t].weight.grad is None and slow[t].weight.grad is None
        assert_close(fast[t].running_mean, slow[t].running_mean, msg=f"running_mean t={t}")
        assert_close(fast[t].running_var, slow[t].running_var, msg=f"running_var t={t}")
        assert fast[t].num_batches_tracked == slow[t].num_batches_tracked


def test_multistep_is_one_batch_norm_call(monkeypatch):
    calls = []
    real = torch.nn.functional.batch_norm
    monkeypatch.setattr(torch.nn.functional, "batch_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    BatchNormTT2d(3, 6, step_mode="m")(torch.randn(6, 2, 3, 4, 4))
    assert len(calls) == 1


def test_loads_spikingjelly_layout_nested_in_a_model():
    C, T = 4, 3
    src = _randomize(BatchNormTT2d(C, T))
    # SpikingJelly's BatchNormThroughTime2d keeps its per-step BNs in `bn_list`.
    sj_state = {f"bntt.bn_list.{k}": v for k, v in src.state_dict().items()}
    model = torch.nn.Module()
    model.bntt = BatchNormTT2d(C, T)
    result = model.load_state_dict(sj_state)
    assert not result.missing_keys and not result.unexpected_keys
    for a, b in zip(model.bntt, src):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.running_var, b.running_var)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda bn: bn(torch.randn(2, 3, 4)), r"expected one step \(B, C, H, W\).*got shape \(2, 3, 4\)"),
        (lambda bn: bn(torch.randn(2, 5, 4, 4), 0), r"C=3.*got shape \(2, 5, 4, 4\)"),
        (lambda bn: bn.multi_step(torch.randn(4, 2, 5, 4, 4)), r"expected channels C=3.*got shape \(4, 2, 5, 4, 4\)"),
        (lambda bn: bn.multi_step(torch.randn(5, 2, 3, 4, 4)), r"5 steps.*time_steps=4.*T' <= 4"),
        (lambda bn: bn(torch.randn(2, 3, 4, 4), 4), r"\[0, 3\], got 4"),
        (lambda bn: bn(torch.randn(2, 3, 4, 4), -1), r"\[0, 3\], got -1"),
    ],
)
def test_bad_input_gives_expected_vs_got(call, match):
    with pytest.raises((ValueError, IndexError), match=match):
        call(BatchNormTT2d(3, 4))


def test_gammas_and_affine_false():
    bn = BatchNormTT1d(3, 2, affine=False)
    assert bn[0].weight is None
    y = bn.multi_step(torch.randn(2, 8, 3))
    assert_close(y.mean(dim=1), torch.zeros(2, 3), atol=1e-5)
    assert BatchNormTT2d(3, 2).gammas.shape == (2, 3)


def test_loads_a_real_spikingjelly_bntt_when_installed():
    layer = pytest.importorskip("spikingjelly.activation_based.layer")
    sj = layer.BatchNormThroughTime2d(3, 4)  # defaults on both sides
    with torch.no_grad():
        for m in sj.bn_list:
            m.weight.uniform_(0.5, 1.5)
            m.running_mean.normal_()
    ours = BatchNormTT2d(4, 3, step_mode="m")
    ours.load_state_dict(sj.state_dict())
    sj.step_mode = "m"
    sj.eval(), ours.eval()
    x = torch.randn(3, 2, 4, 5, 5)
    assert_close(ours(x), sj(x))


def _replace_a_buffer(bn):
    bn[1].running_mean = bn[1].running_mean.clone()  # assignment: that step's buffer is no longer a table row
    return bn


def _assign_loaded(bn):
    bn.load_state_dict({k: v.clone() for k, v in bn.state_dict().items()}, assign=True)
    return bn


HOW_BUFFERS_GOT_THERE = {
    "built": lambda bn: bn,
    "to float64": lambda bn: bn.to(torch.float64).float(),
    "deepcopy": copy.deepcopy,
    "load_state_dict(assign=True)": _assign_loaded,
    "a buffer assigned": _replace_a_buffer,
}


@pytest.mark.parametrize("how", HOW_BUFFERS_GOT_THERE)
@pytest.mark.parametrize("fused", [False, True])
def test_running_statistics_tables_follow_the_steps_buffers(how, fused):
    """The steps' running statistics are rows of one (T, C) table each (one update a sequence, not T):
    whatever replaced the buffers (.to(), deepcopy, load_state_dict(assign=True), assignment), a multi-step
    update equals the per-step loop's, through the plain batch norm call and the fused block's statistics,
    and a forward never replaces a buffer (DDP and optimizers' holders keep theirs)."""
    C, T = 3, 4
    bn = HOW_BUFFERS_GOT_THERE[how](_randomize(BatchNormTT2d(C, T, step_mode="m")))
    ref = copy.deepcopy(bn)
    packed = bn._tables(0, T) is not None
    assert packed == (how != "a buffer assigned")
    held = [id(b) for b in bn.buffers()]
    x = torch.randn(T, 5, C, 4, 4) * 2 + 0.5
    if fused:  # the statistics as a fused kernel gives them, recorded as the fused block records them
        bn.record_statistics(x, *_batch_statistics(x))
    else:
        bn(x)
    for t in range(T):
        ref.step(x[t], t)
    assert [id(b) for b in bn.buffers()] == held
    for (name, got), (_, want) in zip(bn.state_dict().items(), ref.state_dict().items()):
        assert_close(got.float(), want.float(), atol=1e-6, rtol=1e-5, msg=name)
    if packed:  # the rows share the table: the table holds what the steps hold
        assert torch.equal(bn._tables(0, T)[0], torch.stack([step.running_mean for step in bn]))


def _batch_statistics(x_seq):
    """Each step's per-channel mean and biased variance, ``(T, C)`` each."""
    dims = [1, *range(3, x_seq.dim())]
    return x_seq.mean(dims), x_seq.var(dims, unbiased=False)


def test_an_eval_graph_keeps_the_statistics_it_was_built_with():
    """An eval-mode sequence's backward uses the running statistics of its forward, even when a training
    call updates the tables in between (they are written without a version bump)."""
    C, T = 3, 4
    bn = _randomize(BatchNormTT2d(C, T, step_mode="m")).eval()
    ref = copy.deepcopy(bn)
    x = torch.randn(T, 5, C, 4, 4, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(x.shape)
    y = bn(x)
    bn.train()(torch.randn(T, 5, C, 4, 4) * 3 + 1)  # moves the running statistics
    (y * g).sum().backward()
    (ref(x_ref) * g).sum().backward()
    assert not torch.equal(bn[0].running_mean, ref[0].running_mean)
    assert_close(x.grad, x_ref.grad, msg="eval input grad")
