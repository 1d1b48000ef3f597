import os

import pytest
import torch

# The CPU step kernels run eagerly in the suite (same results; no compile on a cold cache), except in
# the tests that compile them on purpose (tests/test_lean.py sets BNTT_KERNELS=compiled there).
os.environ.setdefault("BNTT_KERNELS", "eager")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield
