"""Encoders: signed Poisson (the BNTT seed's) and direct coding."""

import torch

from bntt_snntorch import encoding


def test_poisson_signed_spikes_follow_sign_and_are_reproducible():
    x = torch.randn(4, 3, 5, 5)
    a = encoding.poisson(x, 7, torch.Generator().manual_seed(3))
    b = encoding.poisson(x, 7, torch.Generator().manual_seed(3))
    assert a.shape == (7, 4, 3, 5, 5)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {-1.0, 0.0, 1.0}
    fired = a != 0
    assert torch.equal(torch.sign(a)[fired], torch.sign(x).expand_as(a)[fired])
    assert not torch.equal(a[0], a[1]), "spikes must be redrawn every step"


def test_poisson_rate_is_abs_x_over_two():
    # P(fire) = min(|x| / 2, 1). 20,000 draws per value: binomial std <= 0.0036, tolerance 0.015 (> 4 sigma).
    x = torch.tensor([-2.5, -1.0, -0.3, 0.0, 0.4, 1.2, 1.9, 3.0])
    spikes = encoding.poisson(x, 20_000, torch.Generator().manual_seed(0))
    rate = spikes.abs().mean(0)
    expected = (x.abs() / 2).clamp(max=1)
    torch.testing.assert_close(rate, expected, atol=0.015, rtol=0)


def test_direct_repeats_the_analog_input():
    x = torch.randn(2, 1, 8, 8)
    seq = encoding.encode(x, 5, "d")
    assert seq.shape == (5, 2, 1, 8, 8)
    for t in range(5):
        assert torch.equal(seq[t], x)


def test_unknown_encoding_lists_choices():
    import pytest

    with pytest.raises(ValueError, match="choose one of"):
        encoding.encode(torch.zeros(1, 1), 2, "rate")
