"""Assertions shared by the tests (imported as ``from .helpers import ...``)."""

import torch


def assert_close(a, b, atol=1e-5, rtol=1e-5, msg=""):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}" if msg else m)


LEAKY_VARIANTS = [  # (reset_mechanism, reset_delay, detach_reset): every update the scans implement
    ("subtract", True, False),
    ("subtract", False, False),
    ("zero", True, False),
    ("zero", False, False),
    ("none", True, False),
    ("subtract", False, True),
    ("zero", False, True),
]


def learnable_leaky(cls, beta, threshold, spike_grad, variant):
    """A ``cls`` (Leaky / MultiStepLeaky) of ``variant`` with learnable beta and threshold, graded spikes 1.5."""
    reset, delay, detach = variant
    return cls(
        beta,
        threshold=threshold,
        spike_grad=spike_grad,
        learn_beta=True,
        learn_threshold=True,
        reset_mechanism=reset,
        reset_delay=delay,
        detach_reset=detach,
        graded_spikes_factor=1.5,
    )
