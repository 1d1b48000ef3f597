import os

import pytest
import torch

# The CPU step kernels run eagerly in the suite (same results; no compile on a cold cache), except in
# the tests that compile them on purpose (tests/test_lean.py sets BNTT_COMPILED_KERNELS=1 there).
os.environ.setdefault("BNTT_COMPILED_KERNELS", "0")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield
