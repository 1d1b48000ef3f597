import os

# Under pytest-xdist (the README's `-n auto`) every worker gets one thread, set before torch loads and
# inherited by the runs the tests start (train.py, torchrun): OpenMP pools of several workers on the
# same cores spin against each other and run many times slower than one pool.
ONE_THREAD_PER_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1
if ONE_THREAD_PER_WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

if ONE_THREAD_PER_WORKER:
    torch.set_num_threads(1)

# The fused block runs its eager steps in the suite (same results; no C build, no measurement), except in the
# tests that take the C loops or Triton on purpose (tests/backends.py runs every backend of the table).
os.environ.setdefault("BNTT_KERNELS", "eager")


@pytest.fixture(autouse=True)
def _own_kernel_choices(tmp_path_factory, monkeypatch):
    """BNTT_KERNELS=auto's measurements (kernels/auto_choice.py) go to a file of the test's own,
    never to the machine's, and none is remembered from another test."""
    from bntt_snntorch.kernels import auto_choice

    path = tmp_path_factory.mktemp("kernel-choices") / "choices.json"
    monkeypatch.setattr(auto_choice, "choices_file", lambda: path)
    auto_choice.forget()
    yield
    auto_choice.forget()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield
