"""Every backend of the fused block's table (eager, C in both layouts, Triton) against the per-step reference,
through one harness (tests/backends.py: the cases, the runs and the tolerances): BPTT in training and eval, the
online rule's steps (no gradient through time, from a carried membrane), float64 where a backend takes it, bf16
autocast where it takes that; TAB's fused node (its prefix statistics, weights, biases and ``p``) on every
backend in training and eval, float64 where a backend takes it. The Triton cases run on CUDA, or under Triton's
CPU interpreter in the subprocess tests/test_kernels_interpreted.py starts (``TRITON_INTERPRET=1`` must be set
before Triton is imported)."""

import pytest
import torch

from bntt_snntorch import set_memory

from .backends import BACKENDS, CASES, check_backend, make_block, make_input, runnable, supported
from .helpers import VARIANTS


def _taking(dtype: torch.dtype) -> list:
    """The backends that take ``dtype`` input (each one's own ``supports``) and can run here."""
    return [name for name in BACKENDS if supported(name, dtype) and runnable(name)]


ALL = _taking(torch.float32)
BLOCK_CASES = [
    pytest.param(backend, case, id=f"{backend}-{i}")
    for backend in ALL
    for i, case in enumerate(CASES)
    if not (case[0] == 1 and backend.endswith(":rows"))  # a linear layer has no rows of positions
]


@pytest.fixture(autouse=True)
def _shared_c_builds(monkeypatch, tmp_path_factory):
    """The C loops built once per variant for the whole module (into a folder of the tests' own)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "c-builds"))


@pytest.mark.parametrize("backend,case", BLOCK_CASES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_backend_equals_the_per_step_reference(monkeypatch, backend, case, mode):
    check_backend(monkeypatch, backend, *case, mode)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_backend_runs_the_online_rule_from_a_carried_membrane(monkeypatch, backend, variant):
    """Three steps, then the rest from the state they left, each step's gradient through its own input only: as
    the per-step reference with the membrane detached between steps."""
    check_backend(monkeypatch, backend, 2, variant, "atan", True, 0.5, "train", local=True)


@pytest.mark.parametrize("backend", _taking(torch.float64))
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_backend_in_float64(monkeypatch, backend, variant, mode):
    check_backend(monkeypatch, backend, 2, variant, "triangle", True, 1.0, mode, torch.float64)


@pytest.mark.parametrize("backend", _taking(torch.bfloat16))
@pytest.mark.parametrize("dims,variant", [(2, v) for v in VARIANTS] + [(1, VARIANTS[5])])
def test_backend_under_bf16_autocast(monkeypatch, backend, dims, variant):
    check_backend(monkeypatch, backend, dims, variant, "triangle", True, 1.0, "train", torch.bfloat16)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dims", [2, 1])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tab_block_on_backend_equals_the_per_step_reference(monkeypatch, backend, dims, mode):
    """TAB's fused node (the prefix statistics merged over T, the backward through them added to the backend's)
    against TAB's own steps, then the neuron's."""
    if dims == 1 and backend.endswith(":rows"):
        pytest.skip("a linear layer has no rows of positions")
    check_backend(monkeypatch, backend, dims, VARIANTS[0], "atan", True, 0.5, mode, norm="tab")


@pytest.mark.parametrize("backend", _taking(torch.float64))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tab_block_in_float64(monkeypatch, backend, mode):
    check_backend(monkeypatch, backend, 2, VARIANTS[3], "triangle", True, 1.0, mode, torch.float64, norm="tab")


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dims", [2, 1])
def test_backend_in_the_low_memory_mode_equals_the_per_step_reference(monkeypatch, backend, dims):
    """set_memory(block, "low"): the node keeps no synapse output (recomputed in backward) and still equals the
    per-step reference."""
    if dims == 1 and backend.endswith(":rows"):
        pytest.skip("a linear layer has no rows of positions")
    check_backend(monkeypatch, backend, dims, VARIANTS[1], "atan", True, 0.5, "train", memory="low")
    block = make_block(dims, VARIANTS[1], "atan")
    set_memory(block, "low")
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
        y = block(make_input(dims, 0).requires_grad_())
    assert "BNTTLeaky" in type(y.grad_fn).__name__ and y.shape not in shapes  # the (T, B, 6, ...) output not kept
