"""The engine's promises (issue: one definition, one planner): each formula written once, every layer's
path reported by explain, float64 everywhere, no host read inside a training step, bf16 only where it
pays, and the default run compiling nothing it does not pay back."""

import re
from pathlib import Path

import pytest
import torch

import bntt_snntorch as bn
from bntt_snntorch.kernels import explain
from bntt_snntorch.models import is_ann, list_models

from .helpers import assert_close, count_host_reads

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bntt_snntorch"
SIZES = {"rvd_mlp": 4, "bntt_digits": 8, "vggab_digits": 8, "vggab_digits_binary": 8}


def test_each_formula_is_written_once():
    """Fragments of the neuron update, its derivatives, the surrogates and BNTT's normalisation, statistics and
    running update appear in bntt_snntorch/definition.py and nowhere else in the package's Python (the other
    backends call or compile that file), but for the eager in-place spelling kernels/torch_steps.py, which
    tests/test_definition.py binds to the definition; the C files hold loops only (no formula of the
    definition, which reaches them as the generated definition.h)."""
    fragments = [
        "beta * m_prev",  # charge
        "(fired - r)",  # snnTorch's same-step reset
        "1.0 - fired",  # the detached zero reset and its derivative
        "theta * slope",  # the same-step reset's derivative
        "1.5707963267948966",  # atan's pi / 2
        "abs(z) / b",  # the triangle
        "(dy - mean_dy",  # batch norm's input gradient
        "clamp(beta, 0.0, 1.0)",  # the leak's clamp
        "sqrt(wide(var) + eps)",  # the inverse std
        "rstd * (gamma * scale)",  # the coefficients
        "lerp(running, batch, momentum)",  # the running update
        "count / (count - 1",  # the unbiased factor
        "dy * (x - mean)",  # the backward's centred sums
    ]
    owners = {f: [] for f in fragments}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for f in fragments:
            if f in text:
                owners[f].append(path.relative_to(PACKAGE).as_posix())
    bound = {"definition.py", "kernels/torch_steps.py"}
    assert all("definition.py" in files and set(files) <= bound for files in owners.values()), owners
    c_formulas = ["sqrt", "fminf", "fmaxf", " * theta", "theta * ", "> theta", " * rstd", "rstd * ", " - mu", " * k",
                  "lerp_like_torch(", "expf", "/ count"]  # fmt: skip
    loops = {
        p.name: re.sub(r"/\*.*?\*/", "", p.read_text(), flags=re.S) for p in (PACKAGE / "kernels" / "csrc").glob("*.c")
    }
    assert loops and [(name, f) for name, code in loops.items() for f in c_formulas if f in code] == []


@pytest.mark.parametrize("name", [m for m in list_models() if not m.startswith("_")])
def test_float64_through_every_model_in_both_step_modes(name):
    size = SIZES.get(name, 32)
    kwargs = dict(num_classes=3, in_channels=1, image_size=size)
    if not is_ann(name):
        kwargs["num_steps"] = 3
    model = bn.create_model(name, **kwargs).double()
    for training in (True, False):
        model.train(training)
        if is_ann(name):
            y = model(torch.rand(2, 1, size, size, dtype=torch.float64))
            assert y.dtype == torch.float64
            y.sum().backward()
            continue
        x = torch.rand(3, 2, 1, size, size, dtype=torch.float64) * 2 - 1
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.zero_grad()
        y = model(x)
        y.sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.load_state_dict(state)  # the same running statistics for the per-step run
        model.zero_grad()
        y_step = model.forward_per_step(x)
        y_step.sum().backward()
        assert y.dtype == y_step.dtype == torch.float64
        assert_close(y, y_step, atol=1e-10, rtol=1e-10)
        for a, b in zip(grads, [p.grad for p in model.parameters() if p.grad is not None]):
            assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_float64_never_takes_the_float32_c_loops(monkeypatch):
    from bntt_snntorch.kernels import choose_plan

    monkeypatch.setenv("BNTT_KERNELS", "c")
    p = bn.bntt_leaky().params()
    assert choose_plan(torch.zeros(2, 1, 1 << 20, dtype=torch.float64), p, bntt=True).path == "bntt-eager"


def test_explain_reports_every_layer_and_leaves_the_model_as_it_was():
    model = bn.create_model("bntt_digits", num_steps=3, norm="bn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lines = explain(model, torch.rand(3, 2, 1, 8, 8))
    blocks = [name for name, m in model.named_modules() if type(m).__name__ == "SpikingBlock"]
    assert [line.layer for line in lines if line.path == "unfused"] == blocks  # BN over T*B: norm, then the neuron
    assert sum(line.path == "torch" for line in lines) == len(blocks) and all(line.reason for line in lines)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    bntt = explain(bn.create_model("bntt_digits", num_steps=3), torch.rand(3, 2, 1, 8, 8))
    assert [line.path for line in bntt] == (["bntt-eager"] * 2 + ["pool-torch"]) * 2 + ["bntt-eager"]
    assert "features.0" in str(bntt[0]) and "features.2: pool-torch (BNTT_KERNELS=eager)" in str(bntt[2])


def test_no_host_read_inside_a_training_step():
    """One training epoch of the digits net reads the device only where the loop reads its sums."""
    from bntt_snntorch import encoding
    from bntt_snntorch.layers import mark_spike_inputs
    from bntt_snntorch.training import loop

    model = bn.create_model("bntt_digits", num_steps=4)
    mark_spike_inputs(model.features, 1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = [(torch.rand(16, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (16,))) for _ in range(6)]
    gen = torch.Generator().manual_seed(0)
    encode = lambda x: encoding.encode(x, 4, "p", gen)  # noqa: E731
    with count_host_reads() as calls:
        loop.train_one_epoch(model, data, optimizer, encode, loop.LoopOptions(progress=False, read_every=4))
    assert calls == ["tolist", "tolist"]  # after batch 4 and at the end: none inside the six steps


def test_amp_on_a_cpu_without_bf16_instructions_warns_naming_the_measurement(monkeypatch):
    from bntt_snntorch.training import TrainConfig, config

    monkeypatch.setattr(config, "cpu_bf16_support", lambda: (False, "AVX2"))
    with pytest.warns(UserWarning, match=r"AVX2.*14x slower.*benchmarks/results/amp-cpu.md"):
        TrainConfig.from_recipe("digits", amp="bf16", device="cpu")
    assert (ROOT / config.AMP_MEASUREMENT).is_file()
    monkeypatch.setattr(config, "cpu_bf16_support", lambda: (True, "AVX512"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig.from_recipe("digits", amp="bf16", device="cpu")
