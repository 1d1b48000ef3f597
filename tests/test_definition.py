"""The one neuron definition (bntt_snntorch/definition.py) and the one other spelling of it, the eager
torch steps with in-place ops (kernels/torch_steps.py), agree for every variant: values, the carry to
the previous step and the leak / threshold terms, on fresh random inputs (float64, 1e-12). The Triton
kernels compile the definition's own source; the surrogates take their derivatives from it."""

import zlib

import pytest
import torch

from bntt_snntorch import definition as D
from bntt_snntorch import surrogate
from bntt_snntorch.kernels.torch_steps import backward_into, forward_into

from .helpers import VARIANTS, assert_close

SURROGATES = [surrogate.bntt_triangle(0.3, 1.2), surrogate.atan(2.0), surrogate.fast_sigmoid(5.0),
              surrogate.sigmoid(4.0), surrogate.straight_through()]  # fmt: skip


def _tensors(seed, n=257):
    g = torch.Generator().manual_seed(seed)
    x, m_prev, grad_spk, delta_m = (torch.randn(n, generator=g, dtype=torch.float64) * 1.5 for _ in range(4))
    beta, theta, gf = (
        torch.tensor(0.85, dtype=torch.float64),
        torch.tensor(0.9, dtype=torch.float64),
        torch.tensor(1.5, dtype=torch.float64),
    )
    return x, m_prev, grad_spk, delta_m, beta, theta, gf


@pytest.mark.parametrize("graded", [True, False], ids=["g=1.5", "g=None (exactly 1)"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_the_eager_step_spells_the_definition(variant, graded):
    x, m_prev, _, _, beta, theta, g = _tensors(zlib.crc32(variant.name.encode()))
    h, m, spk = D.forward_step(x, m_prev, beta, theta, g if graded else 1.0, *variant.codes)
    h_out, m_out, spk_out = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    forward_into(x, m_prev, beta, theta, g if graded else None, variant.codes, h_out, m_out, spk_out)
    for name, a, b in (("h", h_out, h), ("membrane", m_out, m), ("spikes", spk_out, spk)):
        assert_close(a, b, atol=1e-12, rtol=1e-12, msg=f"{variant.name}: {name}")
    assert (spk > 0).any() and (spk == 0).any()


@pytest.mark.parametrize("graded", [True, False], ids=["g=1.5", "g=None (exactly 1)"])
@pytest.mark.parametrize("sg", SURROGATES, ids=repr)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_the_eager_reverse_step_spells_the_definition(variant, sg, graded):
    x, m_prev, grad_spk, delta_m, beta, theta, g = _tensors(zlib.crc32(repr((variant, sg)).encode()))
    g_def, g_eager = (g, g) if graded else (1.0, None)
    h, _, _ = D.forward_step(x, m_prev, beta, theta, g_def, *variant.codes)
    slope = sg.derivative(h - theta)
    delta_h, carry, beta_t, theta_t = D.backward_step(
        grad_spk, delta_m, h, m_prev, beta, theta, g_def, slope, *variant.codes
    )
    for need in ((True, True), (False, False)):
        out = torch.empty_like(h)
        carry_e, beta_e, theta_e = backward_into(grad_spk, delta_m, h, m_prev, beta, theta, g_eager, slope,
                                                 variant.codes, need, out)  # fmt: skip
        for name, a, b in (("dL/dh", out, delta_h), ("carry", carry_e, carry), ("beta", beta_e, beta_t),
                           ("theta", theta_e, theta_t)):  # fmt: skip
            if a is None:  # a term not asked for
                assert name in ("beta", "theta") and not need[0], name
                continue
            assert_close(a, b, atol=1e-12, rtol=1e-12, msg=f"{variant.name} {sg!r} {need}: {name}")


@pytest.mark.parametrize("sg", SURROGATES, ids=repr)
def test_every_surrogate_takes_its_derivative_from_the_definition(sg):
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)
    assert torch.equal(sg.derivative(z), D.SURROGATES[sg.code](z, *sg.args()))
    assert torch.equal(D.surrogate_derivative(z, *sg.args(), sg.code), sg.derivative(z))
    assert D.SURROGATES[sg.code].__name__ in {"triangle", "atan", "fast_sigmoid", "sigmoid", "straight_through"}


def test_the_variants_are_one_list_in_one_vocabulary():
    """Every (reset_mechanism, reset_delay, detach_reset) a Leaky takes maps to one of the shipped variants."""
    seen = {D.Variant.of(r, delay, detach) for r in ("subtract", "zero", "none") for delay in (True, False)
            for detach in (True, False)}  # fmt: skip
    assert seen == set(D.VARIANTS) and len(D.VARIANTS) == 7
    assert all(D.Variant.of(**v.leaky_kwargs()) == v for v in D.VARIANTS)
