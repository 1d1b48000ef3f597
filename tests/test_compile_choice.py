"""BNTT_KERNELS=auto on CPU compiles a layer's BNTT steps only where a measurement on this machine, at
the layer's shape, found them faster (bntt_snntorch/kernels/compile_choice.py): the rule on injected
timings, the measurement kept per machine and shape, explain's reasons, and one real measurement."""

import json

import pytest
import torch

from bntt_snntorch import create_model
from bntt_snntorch.kernels import choose_plan, compile_choice, compiled_steps, explain
from bntt_snntorch.kernels.compile_choice import Measurement, worth_measuring
from bntt_snntorch.neurons import bntt_leaky

BIG, SMALL = (10, 16, 64, 32, 32), (10, 64, 32, 8, 8)  # a VGG9 layer at B=16, the digits net's at B=64


@pytest.fixture
def auto(monkeypatch):
    """BNTT_KERNELS unset, and the measurement replaced by injected timings (by shape); returns the
    list of the shapes measured."""
    monkeypatch.delenv("BNTT_KERNELS", raising=False)
    timings = {BIG: Measurement(0.70, 0.47, 21.0), SMALL: Measurement(0.06)}
    measured = []

    def measure(x, p, grad, calls_per_batch=1):
        measured.append((tuple(x.shape), grad) + ((calls_per_batch,) if calls_per_batch != 1 else ()))
        return timings.get(tuple(x.shape), Measurement(0.70, 0.69, 21.0))  # else: compiled no faster

    monkeypatch.setattr(compile_choice, "measure_layer", measure)
    return measured


def _plan(shape, grad=True):
    x = torch.zeros(shape, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        return choose_plan(x, bntt_leaky().params(), bntt=True)


def test_the_rule_compiles_only_for_a_gain_of_five_percent():
    assert Measurement(1.0, 0.94, 20.0).compile and not Measurement(1.0, 0.96, 20.0).compile
    assert not Measurement(1.0).compile and not Measurement(1.0, 1.2, 20.0).compile
    # before compiling anything: could the best saving seen (64 %) pay a compile back in 1000 batches?
    assert worth_measuring(0.10, 50.0) and not worth_measuring(0.05, 50.0) and not worth_measuring(0.70, 500.0)


def test_the_expected_compile_grows_with_the_steps_at_the_median_rate_measured_here():
    assumed = compile_choice.ASSUMED_COMPILE_SECONDS_PER_STEP
    assert compile_choice.expected_compile_seconds(4) == 4 * assumed  # none measured yet
    compile_choice._CHOICES.update(
        a=Measurement(0.2, 0.1, 40.0, 10), b=Measurement(0.2, 0.1, 120.0, 20), c=Measurement(0.2, 0.1, 0.3, 10),
        d=Measurement(0.2, num_steps=10), e=Measurement(0.2, 0.1, 500.0),
    )  # fmt: skip
    # c reused code compiled before (a first call of 0.3 s): not a compile; e was saved without its steps
    assert compile_choice.expected_compile_seconds(4) == pytest.approx(4 * 5.0)  # the median of 4 and 6 s a step


def test_auto_follows_the_measurement_and_says_so(auto):
    big = _plan(BIG)
    assert big.path == "bntt-compiled" and "eager 700.0 ms, compiled 470.0 ms a call (first call 21.0 s)" in big.reason
    small = _plan(SMALL)
    assert small.path == "bntt-eager" and "eager 60.0 ms a call, too little for a compile to pay back" in small.reason
    slower = _plan((10, 16, 64, 16, 16))
    assert slower.path == "bntt-eager" and "compiled 690.0 ms" in slower.reason
    assert auto == [(BIG, True), (SMALL, True), ((10, 16, 64, 16, 16), True)]


def test_a_measurement_is_taken_once_per_machine_and_shape(auto):
    _plan(BIG), _plan(BIG), _plan(BIG, grad=False)
    assert auto == [(BIG, True), (BIG, False)]  # training and inference calls are timed apart
    saved = json.loads(compile_choice.choices_file().read_text())
    capability = torch.backends.cpu.get_cpu_capability()
    assert sorted(saved) == [
        f"{capability}|torch {torch.__version__}|{compile_choice.COMPILED_PATH}|torch.float32|10x16x64x32x32|{mode}"
        for mode in ("eval", "train")
    ]
    compile_choice.forget()  # a new process on this machine reads the file and measures nothing
    assert _plan(BIG).path == "bntt-compiled" and len(auto) == 2
    (tmp := compile_choice.choices_file()).write_text(
        json.dumps({k.replace(capability, "OTHER-CPU"): v for k, v in saved.items()})
    )
    compile_choice.forget()  # another CPU's file: measured again here
    assert tmp.exists() and _plan(BIG).path == "bntt-compiled" and len(auto) == 3


def test_the_online_rules_chunks_count_their_calls_a_batch(auto):
    """The local node of SLTT / OTTT is called once per chunk: the payback gate counts the calls of a batch,
    and the measurement is kept apart from BPTT's at the same shape."""
    assert not worth_measuring(0.03, 50.0) and worth_measuring(0.03, 50.0, calls_per_batch=7)
    x = torch.zeros(BIG, requires_grad=True)
    choose_plan(x, bntt_leaky().params(), bntt=True, calls_per_batch=7)
    choose_plan(x, bntt_leaky().params(), bntt=True)
    assert auto == [(BIG, True, 7), (BIG, True)]
    assert any(k.endswith("|train|7 calls a batch") for k in json.loads(compile_choice.choices_file().read_text()))


def test_explain_shows_the_times_behind_each_choice(auto):
    lines = explain(create_model("bntt_digits", num_steps=10), torch.rand(10, 64, 1, 8, 8))
    assert {line.path for line in lines} == {"bntt-eager"}
    assert all("auto, measured here: eager" in line.reason for line in lines), [str(line) for line in lines]
    assert all(grad is False for _, grad in auto)  # explain runs without a graph: inference timings


def test_a_small_layer_is_timed_eagerly_and_never_compiled(monkeypatch):
    monkeypatch.setattr(compiled_steps, "compiled", lambda *a: pytest.fail("compiled"))
    x = torch.zeros(2, 4, 4, 4, 4)
    m = compile_choice.measure_layer(x, bntt_leaky().params(), grad=True)
    assert m.compiled_s is None and m.compile_s is None and 0 < m.eager_s < 1 and not m.compile


@pytest.mark.slow
def test_a_real_measurement_times_both_paths(monkeypatch):
    monkeypatch.setattr(compile_choice, "ASSUMED_COMPILE_SECONDS_PER_STEP", 0.0)  # measure even this small layer
    lif = bntt_leaky()
    lif.beta.requires_grad_(True)  # a learnable leak gets no gradient from the measurement
    m = compile_choice.measure_layer(torch.zeros(3, 4, 4, 6, 6), lif.params(), grad=True)
    assert m.eager_s > 0 and m.compiled_s > 0 and m.compile_s >= m.compiled_s and lif.beta.grad is None


def test_a_choices_file_of_another_version_is_read_without_failing(auto):
    """Fields another version of the writer added are left out, unreadable entries skipped: the file is
    shared by every version installed on the machine."""
    key = compile_choice.key(torch.zeros(BIG, requires_grad=True), grad=True)
    compile_choice.choices_file().write_text(
        json.dumps({key: {"eager_s": 0.7, "compiled_s": 0.4, "compile_s": 20.0, "future_s": 1.0}, "odd": [1, 2]})
    )
    assert _plan(BIG).path == "bntt-compiled" and auto == []  # read back, not measured again


def test_a_first_calls_measurement_is_not_counted_as_the_models_saved_tensors(monkeypatch, tmp_path):
    """auto measures a new shape inside the model's first call; the measurement's own graphs keep their
    tensors past whatever saved-tensor hooks the caller installed (here the profiler's, which counted them)."""
    from bntt_snntorch.profiling import saved_tensor_bytes

    monkeypatch.delenv("BNTT_KERNELS", raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    compile_choice.forget()
    model = create_model("bntt_digits", num_steps=4)
    x = torch.randn(4, 3, 1, 8, 8)
    try:
        first = saved_tensor_bytes(model, x)  # every layer's shape measured in this call
        assert len(compile_choice._CHOICES) == 3
        assert saved_tensor_bytes(model, x).total == first.total
    finally:
        compile_choice.forget()
