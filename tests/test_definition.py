"""The one definition (bntt_snntorch/definition.py) and the one other spelling of it, the eager torch steps with
in-place ops (kernels/torch_steps.py), agree for every variant: values, the carry to the previous step and the
leak / threshold terms, on fresh random inputs (float64, 1e-12). The C loops and the Triton kernels are built from
the definition's own source (a rule changed in a copy of the package changes every backend alike); the surrogates
take their derivatives from it."""

import importlib.util
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

import bntt_snntorch
from bntt_snntorch import definition as D
from bntt_snntorch import surrogate
from bntt_snntorch.kernels.c_build import compiler
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


_BLOCK_ON_EVERY_BACKEND = """
import sys
import torch
import bntt_snntorch as bn
from bntt_snntorch.kernels import fused_block

results = {}
for path in ("bntt-eager", "bntt-c", "bntt-triton"):
    torch.manual_seed(0)
    norm = bn.BatchNormTT2d(4, 3)
    for step in norm:
        torch.nn.init.uniform_(step.weight, 0.5, 2.0)
    p = bn.bntt_leaky(0.9).params()
    x = (torch.randn(3, 6, 4, 5, 5) * 2).requires_grad_()
    spikes, _ = fused_block(path, x, norm, p, 0.5)
    (spikes * torch.randn(spikes.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    gammas = torch.stack([step.weight.grad for step in norm])
    results[path] = [spikes.detach(), x.grad, gammas, *(torch.stack([getattr(s, n) for s in norm])
                     for n in ("running_mean", "running_var"))]
torch.save(results, sys.argv[1])
"""

#: Two rules of the definition changed in a copy of the package: the coefficients (what every backend's forward
#: and backward normalise with) and the running-statistics update.
_ALTERATIONS = {
    "return k, -mean * k": "return k, -mean * k + 0.5",
    "return lerp(running, batch, momentum)": "return lerp(running, batch, momentum * 0.5)",
}


def _every_backend(package_root: Path, out: Path, cache: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(package_root),
        "TRITON_INTERPRET": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
    }
    done = subprocess.run(
        [sys.executable, "-c", _BLOCK_ON_EVERY_BACKEND, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=package_root,
    )  # fmt: skip (the package of that folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.mark.skipif(shutil.which(compiler()) is None or importlib.util.find_spec("triton") is None,
                    reason="needs a C compiler and Triton (its interpreter)")  # fmt: skip
def test_one_altered_definition_changes_every_backend_alike(tmp_path):
    """The single source: in a copy of the package with two of the definition's rules changed (the coefficients, the
    running update), the eager steps, the C loops and the Triton kernels (interpreted) all change, and alike:
    spikes, the input's and the gammas' gradients and the running statistics agree across the three (spikes
    exactly, the rest 1e-4 of the largest entry) and differ from the unaltered package's."""
    package = Path(bntt_snntorch.__file__).parent
    copy = tmp_path / "altered"
    shutil.copytree(package, copy / "bntt_snntorch", ignore=shutil.ignore_patterns("__pycache__"))
    source = (copy / "bntt_snntorch" / "definition.py").read_text()
    for old, new in _ALTERATIONS.items():
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    (copy / "bntt_snntorch" / "definition.py").write_text(source)
    original = _every_backend(package.parent, tmp_path / "original.pt", tmp_path / "cache")
    altered = _every_backend(copy, tmp_path / "altered.pt", tmp_path / "cache")
    names = ("spikes", "input grad", "gamma grads", "running mean", "running var")
    for path, results in altered.items():
        for name, got, want, before in zip(names, results, altered["bntt-eager"], original[path]):
            scale = want.abs().max().clamp(min=1e-6)
            assert_close(got / scale, want / scale, atol=1e-4, rtol=0, msg=f"{path}: {name}")
            assert not torch.allclose(got, before, atol=1e-6, rtol=1e-4), f"{path}: {name} did not change"
