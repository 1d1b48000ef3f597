"""Assertions shared by the tests (imported as ``from .helpers import ...``)."""

import torch

from bntt_snntorch.definition import VARIANTS, Variant  # the one list of variants the kernels ship

__all__ = ["VARIANTS", "Variant", "assert_close", "learnable_leaky"]


def assert_close(a, b, atol=1e-5, rtol=1e-5, msg=""):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}" if msg else m)


def learnable_leaky(cls, beta, threshold, spike_grad, variant: Variant):
    """A ``cls`` (Leaky / MultiStepLeaky) of ``variant`` with learnable beta and threshold, graded spikes 1.5."""
    return cls(
        beta,
        threshold=threshold,
        spike_grad=spike_grad,
        learn_beta=True,
        learn_threshold=True,
        graded_spikes_factor=1.5,
        **variant.leaky_kwargs(),
    )
