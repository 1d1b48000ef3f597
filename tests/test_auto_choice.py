"""BNTT_KERNELS=auto on CPU runs a layer's fused block on the C loops only where a measurement on this machine, at
the layer's shape, found them faster (bntt_snntorch/kernels/auto_choice.py): the rule on injected timings, the
measurement kept per machine and shape, explain's reasons, and one real measurement."""

import json
import shutil

import pytest
import torch

from bntt_snntorch import create_model
from bntt_snntorch.kernels import auto_choice, c_build, choose_plan, explain
from bntt_snntorch.kernels.auto_choice import Measurement
from bntt_snntorch.neurons import bntt_leaky

BIG, SMALL = (10, 16, 64, 32, 32), (10, 64, 32, 8, 8)  # a VGG9 layer at B=16, the digits net's at B=64


@pytest.fixture
def auto(monkeypatch):
    """BNTT_KERNELS unset, and the measurement replaced by injected timings (by shape); returns the
    list of the shapes measured."""
    monkeypatch.delenv("BNTT_KERNELS", raising=False)
    timings = {BIG: Measurement(0.135, 0.052, 10), SMALL: Measurement(0.06, 0.059, 10)}
    measured = []

    def measure(x, p, grad):
        measured.append((tuple(x.shape), grad))
        return timings.get(tuple(x.shape), Measurement(0.70))  # else: the C loops did not apply

    monkeypatch.setattr(auto_choice, "measure_layer", measure)
    return measured


def _plan(shape, grad=True):
    x = torch.zeros(shape, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        return choose_plan(x, bntt_leaky().params(), bntt=True)


def test_auto_follows_the_measurement_and_says_so(auto):
    big = _plan(BIG)
    assert big.path == "bntt-c" and "auto, measured here: eager 135.0 ms, C 52.0 ms a call" in big.reason
    small = _plan(SMALL)  # the C loops 2 % faster: not enough
    assert small.path == "bntt-eager" and "eager 60.0 ms, C 59.0 ms a call" in small.reason
    assert auto == [(BIG, True), (SMALL, True)]


def test_a_measurement_is_taken_once_per_machine_and_shape(auto):
    _plan(BIG), _plan(BIG), _plan(BIG, grad=False)
    assert auto == [(BIG, True), (BIG, False)]  # training and inference calls are timed apart
    saved = json.loads(auto_choice.choices_file().read_text())
    capability = torch.backends.cpu.get_cpu_capability()
    assert sorted(saved) == [
        f"{capability}|torch {torch.__version__}|{auto_choice.MEASURED_PATHS}|torch.float32|10x16x64x32x32|{mode}"
        for mode in ("eval", "train")
    ]
    auto_choice.forget()  # a new process on this machine reads the file and measures nothing
    assert _plan(BIG).path == "bntt-c" and len(auto) == 2
    (tmp := auto_choice.choices_file()).write_text(
        json.dumps({k.replace(capability, "OTHER-CPU"): v for k, v in saved.items()})
    )
    auto_choice.forget()  # another CPU's file: measured again here
    assert tmp.exists() and _plan(BIG).path == "bntt-c" and len(auto) == 3


def test_explain_shows_the_times_behind_each_choice(auto):
    lines = explain(create_model("bntt_digits", num_steps=10), torch.rand(10, 64, 1, 8, 8))
    blocks = [line for line in lines if line.path.startswith("bntt")]
    assert {line.path for line in blocks} == {"bntt-eager"} and len(blocks) == 5  # 4 convolutions and the fc
    assert all("auto, measured here: eager" in line.reason for line in blocks), [str(line) for line in lines]
    assert all(grad is False for _, grad in auto)  # explain runs without a graph: inference timings


@pytest.mark.skipif(shutil.which(c_build.compiler()) is None, reason="no C compiler here")
def test_a_real_measurement_times_both_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    lif = bntt_leaky()
    lif.beta.requires_grad_(True)  # a learnable leak gets no gradient from the measurement
    m = auto_choice.measure_layer(torch.zeros(3, 4, 4, 6, 6), lif.params(), grad=True)
    assert m.eager_s > 0 and m.c_s > 0 and m.num_steps == 3 and lif.beta.grad is None


def test_a_choices_file_of_another_version_is_read_without_failing(auto):
    """Fields another version of the writer added are left out, unreadable entries skipped: the file is
    shared by every version installed on the machine."""
    key = auto_choice.key(BIG, torch.float32, grad=True)
    auto_choice.choices_file().write_text(
        json.dumps({key: {"eager_s": 0.7, "c_s": 0.4, "compiled_s": 0.3, "future_s": 1.0}, "odd": [1, 2]})
    )
    assert _plan(BIG).path == "bntt-c" and auto == []  # read back, not measured again


def test_a_first_calls_measurement_is_not_counted_as_the_models_saved_tensors(monkeypatch, tmp_path):
    """auto measures a new shape inside the model's first call; the measurement's own graphs keep their
    tensors past whatever saved-tensor hooks the caller installed (here the profiler's, which counted them)."""
    from bntt_snntorch.profiling import saved_tensor_bytes

    monkeypatch.delenv("BNTT_KERNELS", raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    auto_choice.forget()
    model = create_model("bntt_digits", num_steps=4)
    x = torch.randn(4, 3, 1, 8, 8)
    try:
        first = saved_tensor_bytes(model, x)  # every layer's shape measured in this call
        assert len(auto_choice._CHOICES) == 3
        assert saved_tensor_bytes(model, x).total == first.total
    finally:
        auto_choice.forget()
