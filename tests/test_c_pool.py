"""Average pooling on the C loops (:mod:`bntt_snntorch.kernels.c_pool`) against ``F.avg_pool2d``: values and
gradients bit for bit (compared as int32 bit patterns, so negative zeros and subnormals count), and the cases
the loops leave to torch."""

import copy
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bntt_snntorch.kernels import c_build, c_pool, clear_fallbacks
from bntt_snntorch.kernels.fallback import FALLBACKS
from bntt_snntorch.kernels.pooling import avg_pool2d
from bntt_snntorch.layers import TimeDistributed

pytestmark = pytest.mark.skipif(shutil.which(c_build.compiler()) is None, reason="no C compiler here")


@pytest.fixture(autouse=True)
def _auto(monkeypatch):
    """The kernels a user gets (the suite runs BNTT_KERNELS=eager elsewhere)."""
    monkeypatch.setenv("BNTT_KERNELS", "auto")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


def _awkward(*shape: int, seed: int) -> torch.Tensor:
    """Random float32 values of many magnitudes, with negative zeros and subnormals among them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * torch.exp(4 * torch.randn(*shape, generator=g))
    flat = x.view(-1)
    pick = torch.randperm(flat.numel(), generator=g)
    flat[pick[: flat.numel() // 8]] = -0.0
    flat[pick[flat.numel() // 8 : flat.numel() // 4]] *= 1e-40
    return x


def _pooled_with_grad(pool_call, x: torch.Tensor, g: torch.Tensor):
    x = x.clone().requires_grad_()
    y = pool_call(x)
    y.backward(g)
    return y, x.grad


@pytest.mark.parametrize("shape", [(6, 4, 8, 8), (3, 5, 4, 4), (2, 3, 32, 32), (2, 2, 2, 2), (2, 3, 6, 10)])
def test_c_pooling_equals_torchs_values_and_gradients_bit_for_bit(shape):
    x = _awkward(*shape, seed=sum(shape))
    g = _awkward(*shape[:2], shape[2] // 2, shape[3] // 2, seed=1 + sum(shape))
    y, dx = _pooled_with_grad(lambda v: avg_pool2d(v, nn.AvgPool2d(2)), x, g)
    assert y.grad_fn.on_c  # the loops took it
    y_ref, dx_ref = _pooled_with_grad(lambda v: F.avg_pool2d(v, 2), x, g)
    assert torch.equal(_bits(y), _bits(y_ref)) and torch.equal(_bits(dx), _bits(dx_ref))


def test_a_changed_sum_order_would_fail_the_bit_for_bit_test():
    """The comparison can fail: pairs summed first round differently from torch's running sum."""
    x = _awkward(4, 3, 8, 8, seed=3)
    pairs = (x[..., 0::2, 0::2] + x[..., 0::2, 1::2]) + (x[..., 1::2, 0::2] + x[..., 1::2, 1::2])
    assert not torch.equal(_bits(pairs / 4), _bits(c_pool.forward(x)))
    assert torch.equal(_bits(c_pool.forward(x)), _bits(F.avg_pool2d(x, 2)))


@pytest.mark.parametrize(
    "pool, x",
    [
        (nn.AvgPool2d(2), torch.randn(2, 3, 5, 5)),  # odd size
        (nn.AvgPool2d(3), torch.randn(2, 3, 6, 6)),  # 3x3 windows
        (nn.AvgPool2d(2, padding=1), torch.randn(2, 3, 6, 6)),
        (nn.AvgPool2d(2, divisor_override=3), torch.randn(2, 3, 6, 6)),
        (nn.AvgPool2d(2), torch.randn(2, 3, 6, 6, dtype=torch.float64)),
        (nn.AvgPool2d(2), torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)),
    ],
)
def test_what_the_loops_do_not_take_runs_torchs_kernel(pool, x):
    g = torch.randn_like(pool(x))
    y, dx = _pooled_with_grad(lambda v: avg_pool2d(v, pool), x, g)
    assert not y.grad_fn.on_c
    y_ref, dx_ref = _pooled_with_grad(pool, x, g)
    assert torch.equal(y, y_ref) and torch.equal(dx, dx_ref)


def test_time_distributed_pools_on_the_loops_in_both_step_modes():
    x = torch.randn(3, 2, 4, 8, 8)
    multi = TimeDistributed(nn.AvgPool2d(2))
    single = TimeDistributed(nn.AvgPool2d(2), step_mode="s")
    y = multi(x)
    pooled = multi(x.requires_grad_()).grad_fn.next_functions[0][0]  # behind the unflatten's view
    assert pooled.on_c and single(x[0]).grad_fn.on_c
    assert torch.equal(y, F.avg_pool2d(x.detach().flatten(0, 1), 2).unflatten(0, (3, 2)))


def test_eager_kernels_pool_with_torch(monkeypatch):
    monkeypatch.setenv("BNTT_KERNELS", "eager")
    assert not avg_pool2d(torch.randn(2, 3, 8, 8, requires_grad=True), nn.AvgPool2d(2)).grad_fn.on_c


def test_a_training_step_of_the_digits_net_is_bit_for_bit_the_same_with_torchs_pooling(monkeypatch):
    """The whole net (BNTT on the C loops, two 2x2 pools between blocks): outputs and every gradient equal
    with the pools on the loops and with torch's kernel (the loops marked failed)."""
    from bntt_snntorch import create_model

    monkeypatch.setenv("BNTT_KERNELS", "c")
    torch.manual_seed(0)
    model = create_model("bntt_digits", num_steps=3)
    x = torch.rand(3, 6, 1, 8, 8)
    on_loops = []
    monkeypatch.setattr(c_pool, "forward", lambda v, forward=c_pool.forward: on_loops.append(v.shape) or forward(v))
    monkeypatch.setattr(c_pool, "backward", lambda g, back=c_pool.backward: on_loops.append(g.shape) or back(g))
    runs = []
    for torch_pools in (False, True):
        clear_fallbacks()
        if torch_pools:
            FALLBACKS["pool-c"] = "marked failed by the test"
        net = copy.deepcopy(model)
        out = net(x)
        out.backward(torch.ones_like(out))
        runs.append((out, [p.grad for p in net.parameters()]))
    clear_fallbacks()
    # the first run's two pools forward and backward (their outputs' gradients), none of the second run's
    assert on_loops == [(18, 32, 8, 8), (18, 64, 4, 4), (18, 64, 2, 2), (18, 32, 4, 4)]
    (out, grads), (out_ref, grads_ref) = runs
    assert torch.equal(out, out_ref)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_ref))


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """A C compiler that does not exist, a cache folder without libraries, and no library loaded."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    c_pool.library.cache_clear()
    clear_fallbacks()
    yield
    c_pool.library.cache_clear()
    clear_fallbacks()


def test_without_a_compiler_c_warns_once_and_pools_with_torch(no_compiler, monkeypatch):
    monkeypatch.setenv("BNTT_KERNELS", "c")
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with pytest.warns(UserWarning, match=r"AvgPool2d: the pool-c kernels cannot run here \(CBuildError"):
        y = avg_pool2d(x, nn.AvgPool2d(2))
    assert not y.grad_fn.on_c and torch.equal(y, F.avg_pool2d(x, 2))
    assert "CBuildError" in FALLBACKS["pool-c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded: no second attempt, no second warning
        assert not avg_pool2d(x, nn.AvgPool2d(2)).grad_fn.on_c


def test_without_a_compiler_auto_pools_with_torch_quietly(no_compiler, monkeypatch):
    monkeypatch.setenv("BNTT_KERNELS", "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = avg_pool2d(torch.randn(2, 3, 8, 8, requires_grad=True), nn.AvgPool2d(2))
    assert not y.grad_fn.on_c and "pool-c" in FALLBACKS


def test_a_float64_default_dtype_leaves_the_pooling_float32():
    x = _awkward(2, 3, 8, 8, seed=5)
    g = _awkward(2, 3, 4, 4, seed=6)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        y, dx = _pooled_with_grad(lambda v: avg_pool2d(v, nn.AvgPool2d(2)), x, g)
    finally:
        torch.set_default_dtype(previous)
    assert y.grad_fn.on_c and y.dtype == dx.dtype == torch.float32
    y_ref, dx_ref = _pooled_with_grad(lambda v: F.avg_pool2d(v, 2), x, g)
    assert torch.equal(_bits(y), _bits(y_ref)) and torch.equal(_bits(dx), _bits(dx_ref))


def test_a_second_derivative_through_the_pooling_is_torchs():
    """With ``create_graph=True`` the backward runs torch's op (the loops' result has no gradient of its own), so
    gradients of gradients are there and equal ``F.avg_pool2d``'s."""
    x = torch.randn(2, 3, 8, 8)

    def second(pool_call):
        v = x.clone().requires_grad_()
        y = pool_call(v)
        (g,) = torch.autograd.grad((y**2).sum(), v, create_graph=True)
        (gg,) = torch.autograd.grad((g**3).sum(), v)
        return g.detach(), gg

    g, gg = second(lambda v: avg_pool2d(v, nn.AvgPool2d(2)))
    g_ref, gg_ref = second(lambda v: F.avg_pool2d(v, 2))
    assert torch.equal(g, g_ref) and torch.equal(gg, gg_ref)
