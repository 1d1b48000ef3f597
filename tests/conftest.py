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

# The CPU step kernels run eagerly in the suite (same results; no compile on a cold cache), except in
# the tests that compile them on purpose (tests/test_lean.py sets BNTT_KERNELS=compiled there).
os.environ.setdefault("BNTT_KERNELS", "eager")


@pytest.fixture(autouse=True)
def _own_compile_choices(tmp_path_factory, monkeypatch):
    """BNTT_KERNELS=auto's measurements (kernels/compile_choice.py) go to a file of the test's own,
    never to the machine's, and none is remembered from another test."""
    from bntt_snntorch.kernels import compile_choice

    path = tmp_path_factory.mktemp("compile-choices") / "choices.json"
    monkeypatch.setattr(compile_choice, "choices_file", lambda: path)
    compile_choice.forget()
    yield
    compile_choice.forget()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield
