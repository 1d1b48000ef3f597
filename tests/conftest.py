import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield


def assert_close(a, b, atol=1e-5, rtol=1e-5, msg=""):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}" if msg else m)
