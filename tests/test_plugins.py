"""Plug-ins reach every door: a distribution's entry point in the group ``bntt_snntorch.plugins``
registers a neuron, a norm and a data set that ``train.py`` lists and trains; NIR export refuses
what it cannot write by name; ``explain`` says why a plug-in runs unfused."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "tests" / "plugin_dist" / "bntt_toy_plugin.py"


def _install(site: Path) -> Path:
    """A tiny installed distribution: the module and a .dist-info whose entry point names it."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(PLUGIN, site / PLUGIN.name)
    info = site / "bntt_toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bntt-toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bntt_snntorch.plugins]\ntoy = bntt_toy_plugin\n")
    return site


def _train_py(site: Path, *argv, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "train.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_an_installed_plugin_is_listed_and_trains_through_the_cli(tmp_path):
    site = _install(tmp_path / "site")
    help_text = _train_py(site, "--help", tmp_path=tmp_path).stdout
    for name in ("plugin_if", "plugin_sample_norm", "plugin_blobs"):
        assert name in help_text
    out = tmp_path / "run"
    args = ["--dataset", "plugin_blobs", "--neuron", "plugin_if", "--norm", "plugin_sample_norm", "--num-epochs", "1"]
    args += ["--max-batches", "1", "--batch-size", "8", "--num-steps", "3", "--no-progress", "--output-dir", str(out)]
    result = _train_py(site, *args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    config = (out / "config.json").read_text()
    assert '"neuron": "plugin_if"' in config and '"norm": "plugin_sample_norm"' in config
    assert (out / "metrics.csv").exists()


def test_without_the_plugin_the_cli_names_the_choices(tmp_path):
    result = _train_py(tmp_path, "--neuron", "plugin_if", "--num-epochs", "1", tmp_path=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'plugin_if'" in result.stderr


@pytest.fixture
def plugin_module(monkeypatch):
    """The plug-in module imported in this process (its parts registered)."""
    monkeypatch.syspath_prepend(str(PLUGIN.parent))
    import bntt_toy_plugin

    return bntt_toy_plugin


def test_nir_export_refuses_a_plugin_neuron_and_norm_by_layer_and_class(plugin_module):
    from bntt_snntorch import BatchNormTT2d, Leaky, export_to_nir
    from bntt_snntorch.layers import SpikingBlock, TimeDistributed

    def net(norm, neuron):
        return nn.Sequential(SpikingBlock(nn.Conv2d(1, 4, 3, padding=1, bias=False), norm, neuron),
                             TimeDistributed(nn.Flatten()), nn.Linear(4 * 8 * 8, 10, bias=False))  # fmt: skip

    x = torch.rand(2, 1, 8, 8)  # one step: only its shape is read
    with pytest.raises(ValueError, match=r"cannot export 0\.neuron \(HardResetIF\): .*leaky neuron"):
        export_to_nir(net(BatchNormTT2d(4, 3), plugin_module.plugin_if(0.9)), x)
    with pytest.raises(ValueError, match=r"cannot export 0\.norm \(PerSampleNorm\): .*per-channel affine"):
        export_to_nir(net(plugin_module.plugin_sample_norm(4, 3, 2), Leaky(0.9)), x)


def test_explain_says_why_a_plugin_runs_unfused(plugin_module):
    from bntt_snntorch import BatchNormTT1d, Leaky
    from bntt_snntorch.kernels import explain
    from bntt_snntorch.layers import SpikingBlock

    x = torch.rand(3, 2, 5)
    (line,) = explain(SpikingBlock(nn.Linear(5, 4), BatchNormTT1d(4, 3), plugin_module.plugin_if(0.9)), x)
    assert line.path == "unfused" and "plug-in neuron HardResetIF" in line.reason and "kernel_params" in line.reason
    block, neuron = explain(SpikingBlock(nn.Linear(5, 4), plugin_module.plugin_sample_norm(4, 3, 1), Leaky(0.9)), x)
    assert block.path == "unfused" and "plug-in norm PerSampleNorm is not a BNTT" in block.reason
    assert neuron.layer == "neuron" and neuron.path == "torch"  # the neuron's own fused scan after the norm
