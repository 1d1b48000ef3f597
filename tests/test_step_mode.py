"""One protocol for time: every layer has an explicit ``step_mode``, set at construction or for a whole
net by ``set_step_mode``; nothing reads it from a tensor's rank; both modes give the same numbers
(float32, 1e-5)."""

import copy

import pytest
import torch
from torch import nn

import bntt_snntorch as bn
from bntt_snntorch.layers import SpikingBlock, TimeDistributed
from bntt_snntorch.models import is_ann, list_models
from bntt_snntorch.step_mode import StepModule
from bntt_snntorch.utils import reset

from .helpers import assert_close

SPIKING_MODELS = [m for m in list_models() if not is_ann(m) and not m.startswith("_")]
IMAGE_SIZE = {"rvd_mlp": 4, "bntt_digits": 8}  # the VGGs pool down from 32


def _small(name):
    return bn.create_model(name, num_classes=3, num_steps=3, in_channels=1, image_size=IMAGE_SIZE.get(name, 32))


CONSTRUCTORS = {
    "Leaky": lambda mode: bn.Leaky(0.9, step_mode=mode),
    "MultiStepLeaky": lambda mode: bn.MultiStepLeaky(0.9, step_mode=mode),
    "BatchNormTT1d": lambda mode: bn.BatchNormTT1d(4, 3, step_mode=mode),
    "BatchNormTT2d": lambda mode: bn.BatchNormTT2d(4, 3, step_mode=mode),
    "ThroughTime": lambda mode: bn.ThroughTime(lambda: nn.LayerNorm(4), 3, step_mode=mode),
    "BatchNormOverTime1d": lambda mode: bn.BatchNormOverTime1d(4, step_mode=mode),
    "BatchNormOverTime2d": lambda mode: bn.BatchNormOverTime2d(4, step_mode=mode),
    "ThresholdDependentBatchNorm1d": lambda mode: bn.ThresholdDependentBatchNorm1d(4, 3, step_mode=mode),
    "ThresholdDependentBatchNorm2d": lambda mode: bn.ThresholdDependentBatchNorm2d(4, 3, step_mode=mode),
    "TemporalEffectiveBatchNorm1d": lambda mode: bn.TemporalEffectiveBatchNorm1d(4, 3, step_mode=mode),
    "TemporalEffectiveBatchNorm2d": lambda mode: bn.TemporalEffectiveBatchNorm2d(4, 3, step_mode=mode),
    "TimeDistributed": lambda mode: TimeDistributed(nn.Flatten(), step_mode=mode),
    "SpikingBlock": lambda mode: SpikingBlock(nn.Linear(4, 4), bn.BatchNormTT1d(4, 3), bn.bntt_leaky(), step_mode=mode),
    "SpikingNet": lambda mode: bn.create_model("bntt_digits", num_steps=3, step_mode=mode),
}


@pytest.mark.parametrize("name", CONSTRUCTORS)
def test_every_layer_takes_its_step_mode_at_construction(name):
    for mode in ("s", "m"):
        layer = CONSTRUCTORS[name](mode)
        assert isinstance(layer, StepModule) and layer.step_mode == mode
    with pytest.raises(ValueError, match="step_mode must be 's'"):
        CONSTRUCTORS[name]("multi")


@pytest.mark.parametrize("name", SPIKING_MODELS)
@pytest.mark.parametrize("training", [True, False])
def test_set_step_mode_runs_every_model_one_step_a_call(name, training):
    """Mode "s" (one step a call, state kept in the layers) gives mode "m"'s logits and gradients."""
    multi = _small(name).train(training)
    single = bn.set_step_mode(copy.deepcopy(multi), "s")
    assert all(m.step_mode == "s" for m in single.modules() if isinstance(m, StepModule))
    size = IMAGE_SIZE.get(name, 32)
    x = torch.rand(3, 4, 1, size, size) * 2 - 1
    y_multi = multi(x)
    y_single = torch.stack([single(x[t]) for t in range(3)]).mean(0)
    assert_close(y_single, y_multi, atol=1e-5, rtol=1e-5, msg="logits")
    g = torch.randn_like(y_multi)
    (y_multi * g).sum().backward()
    (y_single * g).sum().backward()
    for (pname, a), b in zip(multi.named_parameters(), single.parameters()):
        if a.grad is not None:
            scale = a.grad.abs().max().clamp(min=1e-3)
            assert_close(b.grad / scale, a.grad / scale, atol=1e-4, rtol=1e-4, msg=pname)
    assert single.current_step == 0  # wrapped after num_steps calls
    single(x[0])
    first_block = next(m for m in single.modules() if isinstance(m, SpikingBlock))
    assert single.current_step == 1 and first_block.current_step == 0  # the net keeps the state
    reset(single)
    assert single.current_step == 0 and "_state" not in single.__dict__


def test_the_rank_of_a_tensor_never_picks_the_mode():
    layer = bn.BatchNormTT2d(4, 3, step_mode="m")
    with pytest.raises(ValueError, match=r"expects a sequence|expected channels"):
        layer(torch.randn(2, 4, 5, 5))  # one step given to a multi-step layer: an error, not a guess
    with pytest.raises(TypeError, match="no t"):
        layer(torch.randn(3, 2, 4, 5, 5), 1)
    single = bn.BatchNormTT1d(4, 3)  # (B, C, L) and (T, B, C) have one rank: the mode says which
    x = torch.randn(3, 4, 6)
    assert_close(single(x, 0), single[0](x))
    net = bn.create_model("bntt_digits", num_steps=3)
    with pytest.raises(ValueError, match=r"step_mode='s'\) expects one step \(B, C=1, H, W\).*set step_mode='m'"):
        bn.set_step_mode(net, "s")(torch.rand(3, 2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"sequence \(T, B, C=1, H, W\).*set step_mode='s'"):
        bn.set_step_mode(net, "m")(torch.rand(2, 1, 8, 8))


def test_set_step_mode_leaves_snntorch_neurons_and_returns_the_net():
    import snntorch as snn

    net = nn.Sequential(nn.Linear(3, 4), bn.BatchNormTT1d(4, 2), snn.Leaky(0.9), bn.Leaky(0.8))
    assert bn.set_step_mode(net, "m") is net
    assert net[1].step_mode == net[3].step_mode == "m" and not hasattr(net[2], "step_mode")
    with pytest.raises(ValueError, match="step_mode must be"):
        bn.set_step_mode(net, "x")


def test_a_block_in_single_step_mode_keeps_its_membrane_until_reset():
    block = SpikingBlock(nn.Linear(3, 4, bias=False), bn.BatchNormTT1d(4, 3), bn.bntt_leaky(), step_mode="s")
    x = torch.randn(3, 6, 3) * 3
    ref = block.multi_step(x)
    assert_close(torch.stack([block(x[t]) for t in range(3)]), ref)
    assert block.current_step == 0  # wraps at the norm's time_steps
    block(x[0])
    reset(block)
    assert block.current_step == 0 and "_mem" not in block.__dict__
    assert_close(torch.stack([block(x[t]) for t in range(3)]), ref)
