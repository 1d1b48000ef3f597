"""Assertions and probes shared by the tests (imported as ``from .helpers import ...``)."""

import contextlib

import torch

from bntt_snntorch.definition import VARIANTS, Variant  # the one list of variants the kernels ship

__all__ = ["VARIANTS", "Variant", "assert_close", "count_host_reads", "learnable_leaky", "rel"]


def assert_close(a, b, atol=1e-5, rtol=1e-5, msg=""):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{msg}: {m}" if msg else m)


def rel(a, b) -> float:
    """The relative L2 error of ``a`` against ``b``."""
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


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


@contextlib.contextmanager
def count_host_reads():
    """Count the calls that copy a tensor's value to the host (item, tolist, bool, float, int), in every
    thread (autograd's backward included)."""
    calls = []
    names = ("item", "tolist", "__bool__", "__float__", "__int__")
    originals = {name: getattr(torch.Tensor, name) for name in names}

    def counted(name, method):
        def wrapper(self, *args, **kwargs):
            calls.append(name)
            return method(self, *args, **kwargs)

        return wrapper

    for name, method in originals.items():
        setattr(torch.Tensor, name, counted(name, method))
    try:
        yield calls
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)
