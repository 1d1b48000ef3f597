"""Assertions shared by the tests (imported as ``from .helpers import ...``)."""

import torch


def assert_close(a, b, atol=1e-5, rtol=1e-5, msg=""):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}" if msg else m)
