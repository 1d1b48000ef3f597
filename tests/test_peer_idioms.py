"""Drop-in as a peer's user writes it: snnTorch's constructors (positional and keyword), its
per-step loops (``init_leaky()``, ``init_hidden=True``), SpikingJelly's explicit ``step_mode``,
and every BNTT call form mixed in one graph.

Tolerances (float32): values and gradients 1e-6 abs where both sides run the same per-step
formula; 1e-5 abs / 1e-4 rel against the fused multi-step scan."""

import copy
import inspect
import itertools
import warnings

import pytest
import snntorch as snn
import torch
import torch._dynamo as dynamo
from snntorch import functional as SF  # noqa: F401  (snnTorch's namespace, imported as users do)

import bntt_snntorch as bs
from bntt_snntorch import BatchNormTT1d, BatchNormTT2d, Leaky, MultiStepLeaky

from .helpers import assert_close


# ----------------------------------------------------------------------------- BNTT constructors
@pytest.mark.parametrize("ours,theirs", [(BatchNormTT1d, snn.BatchNormTT1d), (BatchNormTT2d, snn.BatchNormTT2d)])
def test_bntt_takes_snntorch_arguments_and_defaults(ours, theirs):
    for args, kwargs in [
        ((4, 2), {}),
        ((), {"input_features": 4, "time_steps": 2}),
        ((4, 2, 1e-3, 0.2, False), {}),
        ((4,), {"time_steps": 2, "eps": 1e-3}),
    ]:
        a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
        assert len(a) == len(b)
        for m, r in zip(a, b):
            assert (m.num_features, m.eps, m.momentum, m.affine) == (r.num_features, r.eps, r.momentum, r.affine)
        assert set(a.state_dict()) == set(b.state_dict())


def test_bntt_channel_count_given_once():
    with pytest.raises(TypeError, match="num_features .*input_features"):
        BatchNormTT2d(4, 2, input_features=4)
    with pytest.raises(TypeError, match="time_steps"):
        BatchNormTT2d(input_features=4)


@pytest.mark.parametrize("peer", ["snntorch", "spikingjelly"])
def test_peer_state_dict_with_defaults_gives_equal_outputs(peer):
    """eps is not in a state dict: equal defaults are what keeps a loaded checkpoint's numbers."""
    if peer == "snntorch":
        ref = snn.BatchNormTT2d(3, 4)
        step = lambda x, t: ref[t](x)  # noqa: E731
    else:
        layer = pytest.importorskip("spikingjelly.activation_based.layer")
        ref = layer.BatchNormThroughTime2d(4, 3)  # SpikingJelly's order: (T, num_features)
        step = lambda x, t: ref.bn_list[t](x)  # noqa: E731
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(0.5, 1.5)
        for name, b in ref.named_buffers():
            if "running" in name:
                b.uniform_(0.2, 2.0)
    ours = BatchNormTT2d(3, 4)
    ours.load_state_dict(ref.state_dict())
    ours.eval(), ref.eval()
    x = torch.randn(4, 2, 3, 5, 5)
    assert_close(ours.multi_step(x), torch.stack([step(x[t], t) for t in range(4)]), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- BNTT call forms
CALL_FORMS = {
    "explicit": lambda bn, x: torch.stack([bn(x[t], t) for t in range(len(x))]),
    "indexed": lambda bn, x: torch.stack([bn[t](x[t]) for t in range(len(x))]),
    "counter": lambda bn, x: torch.stack([bn(x[t]) for t in range(len(x))]),
    "multi-step": lambda bn, x: bn.multi_step(x),
}


@pytest.mark.parametrize("first,second", list(itertools.product(CALL_FORMS, repeat=2)))
def test_every_pair_of_call_forms_in_one_graph(first, second):
    """Two calls (any forms) before one backward: no in-place error, and the gradients of
    each call equal those of the same call made alone (training mode: running statistics
    do not enter the gradient)."""
    T = 3
    bn = BatchNormTT2d(4, T)
    with torch.no_grad():
        for m in bn:
            m.weight.uniform_(0.5, 1.5)
    x1, x2 = torch.randn(T, 2, 4, 3, 3), torch.randn(T, 2, 4, 3, 3) * 2 + 1
    w1, w2 = torch.randn_like(x1), torch.randn_like(x2)
    a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    y1 = CALL_FORMS[first](bn, a)
    y2 = CALL_FORMS[second](bn, b)
    ((y1 * w1).sum() + (y2 * w2).sum()).backward()
    for form, x, w, got in ((first, x1, w1, a.grad), (second, x2, w2, b.grad)):
        alone = copy.deepcopy(BatchNormTT2d(4, T))
        alone.load_state_dict(bn.state_dict())
        xa = x.clone().requires_grad_()
        (CALL_FORMS[form](alone, xa) * w).sum().backward()
        assert_close(got, xa.grad, atol=1e-5, rtol=1e-5, msg=form)


# ----------------------------------------------------------------------------- Leaky constructor
def test_leaky_signature_is_snn_leakys_then_our_keywords():
    theirs = list(inspect.signature(snn.Leaky.__init__).parameters.values())
    for cls in (Leaky, MultiStepLeaky):
        ours = list(inspect.signature(cls.__init__).parameters.values())
        assert [(p.name, p.default, p.kind) for p in ours[: len(theirs)]] == [
            (p.name, p.default, p.kind) for p in theirs
        ]
        extra = ours[len(theirs) :]
        assert [p.name for p in extra] == ["step_mode", "detach_reset", "backend"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)


def test_positional_arguments_mean_what_they_mean_in_snntorch():
    args = (0.9, 1.0, None, True)  # beta, threshold, spike_grad, surrogate_disable
    for cls in (Leaky, MultiStepLeaky):
        ours, ref = cls(*args), snn.Leaky(*args)
        assert ours.surrogate_disable and not isinstance(ours.beta, torch.nn.Parameter)
        x = torch.tensor([[0.5, 1.5, 3.0]], requires_grad=True)
        spk = ours.step(x)[0]
        assert torch.equal(spk, ref(x, torch.zeros_like(x))[0])
    full = (0.8, 0.7, None, False, False, False, True, True, "zero", False, False, 2.0, True, False)
    ours, ref = Leaky(*full), snn.Leaky(*full)
    for name in ("init_hidden", "inhibition", "output", "reset_mechanism", "reset_delay", "state_quant"):
        assert getattr(ours, name) == getattr(ref, name), name
    for name in ("beta", "threshold", "graded_spikes_factor"):
        assert isinstance(getattr(ours, name), torch.nn.Parameter) and torch.equal(
            getattr(ours, name), getattr(ref, name)
        )


def test_step_mode_is_explicit():
    assert Leaky(0.9).step_mode == "s" and MultiStepLeaky(0.9).step_mode == "m"
    assert Leaky(0.9, step_mode="m").step_mode == "m"
    with pytest.raises(ValueError, match="step_mode must be 's'"):
        Leaky(0.9, step_mode="multi")
    assert set(Leaky(0.9, step_mode="m").state_dict()) == set(snn.Leaky(0.9).state_dict())


# ----------------------------------------------------------------------------- snnTorch loops
def _loop(lif, x_seq, mem=None, hidden=False):
    spikes, mems = [], []
    for x in x_seq:
        if hidden:
            spikes.append(lif(x))
            mems.append(lif.mem)
        else:
            spk, mem = lif(x, mem)
            spikes.append(spk)
            mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


LOOP_CASES = [
    dict(),
    dict(reset_mechanism="zero"),
    dict(reset_mechanism="none"),
    dict(reset_delay=False),
    dict(learn_beta=True, learn_threshold=True),
    dict(learn_graded_spikes_factor=True, graded_spikes_factor=0.5),
    dict(surrogate_disable=True),
]


@pytest.mark.parametrize("kwargs", LOOP_CASES, ids=[repr(k) for k in LOOP_CASES])
@pytest.mark.parametrize("hidden", [False, True])
def test_snntorch_loop_with_init_leaky_or_init_hidden(kwargs, hidden):
    """``mem = lif.init_leaky()`` then ``spk, mem = lif(x, mem)``, or ``init_hidden=True``: the
    same values and gradients (input and every learnable parameter) as snn.Leaky."""
    x = torch.randn(6, 3, 5) + 0.6
    ours, ref = Leaky(0.8, init_hidden=hidden, **kwargs), snn.Leaky(0.8, init_hidden=hidden, **kwargs)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    spk_a, mem_a = _loop(ours, xa, None if hidden else ours.init_leaky(), hidden)
    spk_b, mem_b = _loop(ref, xb, None if hidden else ref.init_leaky(), hidden)
    assert spk_b.sum() > 0
    assert torch.equal(spk_a, spk_b)
    assert_close(mem_a, mem_b, atol=1e-6, rtol=0)
    if kwargs.get("surrogate_disable"):
        return
    w = torch.randn_like(x)
    (spk_a * w + mem_a).sum().backward()
    (spk_b * w + mem_b).sum().backward()
    assert_close(xa.grad, xb.grad, atol=1e-6, rtol=0)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_init_hidden_rejects_mem_and_output_returns_both():
    lif = Leaky(0.5, init_hidden=True)
    x = torch.rand(2, 1)
    with pytest.raises(TypeError, match="init_hidden"):
        lif(x, x)
    spk, mem = Leaky(0.5, init_hidden=True, output=True)(x)
    assert spk.shape == mem.shape == x.shape


@pytest.mark.parametrize(
    "kwargs",
    [dict(inhibition=True), dict(state_quant=lambda m: torch.round(m * 4) / 4)],
    ids=["inhibition", "state_quant"],
)
def test_inhibition_and_state_quant_run_the_reference_in_both_modes(kwargs):
    x = torch.randn(5, 4, 6) + 0.8
    with warnings.catch_warnings():  # snnTorch warns that inhibition is unstable, at each construction
        warnings.filterwarnings("ignore", message="Inhibition is an unstable feature")
        ref, per_step, multi_step = snn.Leaky(0.7, **kwargs), Leaky(0.7, **kwargs), MultiStepLeaky(0.7, **kwargs)
    spk_ref, mem_ref = _loop(ref, x, ref.init_leaky())
    spk_s, mem_s = _loop(per_step, x, None)
    spk_m, mem_m = multi_step(x)
    for spk, mem in ((spk_s, mem_s), (spk_m, mem_m)):
        assert torch.equal(spk, spk_ref)
        assert_close(mem, mem_ref, atol=1e-6, rtol=0)


def test_detach_reset_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="detach_reset=True .*inhibition"):
        Leaky(0.9, inhibition=True, detach_reset=True)


def test_per_step_call_compiles_without_graph_break():
    lif = Leaky(0.5, surrogate_disable=True)
    explanation = dynamo.explain(lif)(torch.rand(2, 1))
    assert explanation.graph_break_count == 0


# ----------------------------------------------------------------------------- multi-step, explicit
def test_multistep_takes_init_leaky_and_keeps_hidden_state():
    x = torch.randn(8, 3, 5) + 0.6
    lif = MultiStepLeaky(0.8)
    spk, mem = lif(x, lif.init_leaky())
    ref = snn.Leaky(0.8)
    spk_ref, mem_ref = _loop(ref, x, ref.init_leaky())
    assert torch.equal(spk, spk_ref)
    assert_close(mem, mem_ref, atol=1e-5, rtol=1e-4)
    # step(): the empty membrane means zeros, as in snn.Leaky
    s0, m0 = lif.step(x[0], lif.init_leaky())
    assert s0.shape == x[0].shape and torch.equal(s0, spk_ref[0])
    # init_hidden=True: the membrane carries over from one chunk of steps to the next
    hidden = MultiStepLeaky(0.8, init_hidden=True)
    first, second = hidden(x[:5]), hidden(x[5:])
    assert torch.equal(torch.cat([first, second]), spk_ref)
    assert_close(hidden.mem, mem_ref[-1], atol=1e-5, rtol=1e-4)


def test_a_single_step_given_to_a_multistep_call_is_an_error():
    """An snn.Leaky-style loop on a multi-step layer used to run (B, F) as B steps of (F,)."""
    lif = MultiStepLeaky(0.9)
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"got one step: input and mem both \(4, 6\).*step_mode='s'"):
        lif(x, torch.zeros(4, 6))
    mem = lif.init_leaky()
    with pytest.raises(ValueError, match="got one step"):
        for _ in range(2):  # the first call reads (4, 6) as a sequence; its (4, 6) membrane gives it away
            spk, mem = lif(x, mem)
    hidden = MultiStepLeaky(0.9, init_hidden=True)
    hidden(torch.randn(3, 4, 6))
    with pytest.raises(ValueError, match="got one step"):
        hidden(torch.randn(4, 6))
    with pytest.raises(ValueError, match=r"\(T, B, \.\.\.\), got shape \(6,\)"):
        lif(torch.randn(6))


def test_same_layer_switches_mode_with_one_state_dict():
    """SpikingJelly's idiom: one layer, step_mode switched; both modes give the same numbers."""
    x = torch.randn(7, 2, 9) + 0.5
    lif = Leaky(0.85, learn_beta=True, step_mode="m")
    spk_m, mem_m = lif(x)
    lif.step_mode = "s"
    spk_s, mem_s = _loop(lif, x, lif.init_leaky())
    assert torch.equal(spk_m, spk_s)
    assert_close(mem_m, mem_s, atol=1e-5, rtol=1e-4)


def test_top_level_exports():
    for name in ("Leaky", "MultiStepLeaky", "BatchNormTT", "BatchNormTT1d", "BatchNormTT2d"):
        assert name in bs.__all__ and hasattr(bs, name)
    assert isinstance(BatchNormTT2d(2, 2), bs.BatchNormTT) and issubclass(MultiStepLeaky, Leaky)
