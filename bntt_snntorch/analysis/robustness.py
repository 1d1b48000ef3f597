"""White-box FGSM and PGD through the surrogate gradient.

Attacks act on normalised images ``(B, C, H, W)``; the budget ``eps`` is in
pixel units (pixels in [0, 1], before normalisation), so channel ``c`` moves
by at most ``eps / std[c]`` and stays inside the valid pixel range
``[(0 - mean) / std, (1 - mean) / std]``.

Poisson input is handled the standard way for stochastic encoders: the
gradient is averaged over ``draws`` fresh spike trains (expectation over
transformation), and each draw passes the gradient of its *expected* value,
``d E[s] / dx = 1 / 2`` inside ``|x| < 2`` (straight-through), since a sampled
spike has no gradient of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import encoding
from .._compat import renamed_keywords


def differentiable_encoder(
    method: str, num_steps: int, generator: torch.Generator | None = None, rescale: float = 2.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x (B, ...) -> (T, B, ...)`` with a gradient: direct coding as is; Poisson with fresh draws
    and the straight-through gradient of the expected spike ``clamp(x / rescale, -1, 1)``."""
    if method in ("d", "direct"):
        return lambda x: encoding.direct(x, num_steps)

    def encode(x):
        spikes = encoding.poisson(x.detach(), num_steps, generator, rescale)
        expected = (x / rescale).clamp(-1, 1)
        return spikes + (expected - expected.detach()).unsqueeze(0)

    return encode


class PixelBox:
    """The valid range and the budget of a normalised image, per channel, from ``mean``/``std``."""

    def __init__(self, mean, std, device=None):
        shape = (1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(shape)
        mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(shape)
        self.low, self.high = (0 - mean) / self.std, (1 - mean) / self.std

    def project(self, x_adv, x, eps: float):
        """Clip ``x_adv`` into the eps-ball around ``x`` (pixel units) and the valid range."""
        radius = eps / self.std
        return torch.max(torch.min(x_adv, x + radius), x - radius).clamp(self.low, self.high)


def _input_gradient(model: nn.Module, x, y, encode, draws: int):
    grad = torch.zeros_like(x)
    for _ in range(draws):
        x_req = x.detach().requires_grad_()
        loss = F.cross_entropy(model(encode(x_req)), y)
        grad += torch.autograd.grad(loss, x_req)[0]
    return grad / draws


def fgsm(model: nn.Module, x, y, eps: float, encode, box: PixelBox, draws: int = 1):
    """One signed-gradient step of size ``eps`` (pixel units). ``eps = 0`` returns ``x`` unchanged."""
    if eps == 0:
        return x.clone()
    grad = _input_gradient(model, x, y, encode, draws)
    return box.project(x + grad.sign() * eps / box.std, x, eps).detach()


@renamed_keywords(steps="iterations")
def pgd(
    model: nn.Module,
    x,
    y,
    eps: float,
    encode,
    box: PixelBox,
    iterations: int = 7,
    step_size: float | None = None,
    draws: int = 1,
    random_start: bool = True,
    generator: torch.Generator | None = None,
):
    """``iterations`` signed-gradient steps of ``step_size`` (default ``2.5 * eps / iterations``, pixel
    units), projected onto the eps-ball and the valid range; uniform random start inside the ball."""
    if eps == 0:
        return x.clone()
    step_size = 2.5 * eps / iterations if step_size is None else step_size
    x_adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1
        x_adv = box.project(x + noise * eps / box.std, x, eps)
    for _ in range(iterations):
        grad = _input_gradient(model, x_adv, y, encode, draws)
        x_adv = box.project(x_adv + grad.sign() * step_size / box.std, x, eps).detach()
    return x_adv


@torch.no_grad()
def _accuracy(model, x, y, encode) -> int:
    return (model(encode(x)).argmax(1) == y).sum().item()


@renamed_keywords(pgd_steps="pgd_iterations")
def robust_accuracy(
    model: nn.Module,
    loader,
    encode_method: str,
    num_steps: int,
    box: PixelBox,
    eps_list,
    attack: str = "fgsm",
    device="cpu",
    draws: int = 1,
    pgd_iterations: int = 7,
    seed: int = 0,
    max_batches: int | None = None,
) -> dict[float, float]:
    """Accuracy under ``attack`` ("fgsm" or "pgd", ``pgd_iterations`` of it) for each eps:
    ``{eps: accuracy}``."""
    model.eval()
    gen = torch.Generator(device).manual_seed(seed)
    encode = differentiable_encoder(encode_method, num_steps, gen)
    correct = {eps: 0 for eps in eps_list}
    seen = 0
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        for eps in eps_list:
            if attack == "fgsm":
                x_adv = fgsm(model, x, y, eps, encode, box, draws)
            else:
                x_adv = pgd(model, x, y, eps, encode, box, pgd_iterations, draws=draws, generator=gen)
            correct[eps] += _accuracy(model, x_adv, y, encode)
        seen += len(y)
    return {eps: c / seen for eps, c in correct.items()}
