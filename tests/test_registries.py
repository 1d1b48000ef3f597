"""Neurons and norms are registry entries like models and data sets: the models build them by name,
``train.py --neuron / --norm`` choose them, checkpoints record them, and a new one plugs in with one
file (tests/plugins/)."""

import pytest
import torch

import bntt_snntorch as bn
from bntt_snntorch import TrainConfig, train
from bntt_snntorch.commands.train import config_from_args, get_args_parser
from bntt_snntorch.layers import SpikingBlock
from bntt_snntorch.neurons import neuron_info
from bntt_snntorch.training import ConfigError, load_run

from .helpers import assert_close
from .plugins import toy_neuron, toy_norm


def test_builtin_neurons_and_norms_are_registered_with_metadata():
    assert {"bntt_leaky", "bntt_leaky_zero", "leaky"} <= set(bn.list_neurons())
    assert {"bntt", "bn", "tdbn", "tebn", "none"} <= set(bn.list_norms())
    resets = {name: bn.create_neuron(name, 0.9).params().reset_mechanism for name in ("bntt_leaky", "bntt_leaky_zero")}
    assert resets == {"bntt_leaky": "subtract", "bntt_leaky_zero": "zero"}
    assert neuron_info("bntt_leaky_zero").description.startswith("The BNTT seed neuron with reset to zero")
    from bntt_snntorch.temporal_norm import norm_info

    assert norm_info("bntt").per_step_statistics and not norm_info("tebn").per_step_statistics
    with pytest.raises(ValueError, match="unknown neuron 'lif'; available: .*bntt_leaky"):
        bn.create_neuron("lif", 0.9)


@pytest.mark.parametrize("neuron", ["bntt_leaky", "bntt_leaky_zero", "leaky"])
def test_models_build_their_neurons_from_the_registry(neuron):
    model = bn.create_model("bntt_digits", num_steps=3, neuron=neuron)
    blocks = [m for m in model.modules() if isinstance(m, SpikingBlock)]
    reference = bn.create_neuron(neuron, 0.95)
    for block in blocks:
        p, q = block.neuron.params(), reference.params()
        assert (p.reset_mechanism, p.detach_reset, p.spike_grad) == (q.reset_mechanism, q.detach_reset, q.spike_grad)
    x = torch.rand(3, 2, 1, 8, 8)
    assert_close(model.forward_per_step(x), model(x), atol=1e-5, rtol=1e-5)
    rvd = bn.create_model("rvd_mlp", num_steps=2, image_size=4, neuron=neuron)
    assert type(rvd.features[1].neuron) is type(reference)


def test_a_toy_neuron_and_a_toy_norm_train_through_train(tmp_path):
    assert "toy_if" in bn.list_neurons() and "toy_gain" in bn.list_norms()
    cfg = TrainConfig.from_recipe(
        "digits", neuron="toy_if", norm="toy_gain", num_epochs=1, max_batches=1, num_steps=3,
        output_dir=str(tmp_path / "toy"), progress=False,
    )  # fmt: skip
    result = train(cfg)
    blocks = [m for m in result.model.modules() if isinstance(m, SpikingBlock)]
    assert all(isinstance(b.neuron, toy_neuron.ToyIF) for b in blocks)
    assert all(isinstance(b.norm, toy_norm.StepGain) for b in blocks)
    assert any(b.norm.gain.detach().ne(1).any() for b in blocks)  # the one batch trained the gains
    model, saved, _ = load_run(tmp_path / "toy")
    assert (saved.neuron, saved.norm) == ("toy_if", "toy_gain")
    assert isinstance(model.features[0].neuron, toy_neuron.ToyIF)


def test_neuron_flag_is_recorded_validated_and_old_runs_keep_the_seed_neuron():
    args = get_args_parser().parse_args(["--neuron", "bntt_leaky_zero", "--num-steps", "3"])
    assert config_from_args(args).neuron == "bntt_leaky_zero"
    assert TrainConfig.from_dict({"arch": "bntt_digits"}).neuron == "bntt_leaky"  # a checkpoint from 0.1
    with pytest.raises(ConfigError, match="--neuron leaky applies to spiking models"):
        TrainConfig.from_recipe("bsnn-digits-fp", neuron="leaky")
    with pytest.raises(ConfigError, match="unknown --neuron 'nope'"):
        TrainConfig.from_recipe("digits", neuron="nope")
