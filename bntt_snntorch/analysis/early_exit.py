"""Early exit from the learned BNTT gammas (Kim & Panda 2020, section on early exit).

The mean gamma of the BNTT layers falls as the time step grows: later steps
contribute less. The network exits at the first step whose layer-averaged
gamma is below a threshold.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..bntt import BatchNormTT

DEFAULT_EXIT_THRESHOLD = 0.1  # the paper's value (unconfirmed from code)


def gamma_curves(model: nn.Module) -> dict[str, torch.Tensor]:
    """Mean gamma of every BNTT layer at every step: ``{layer name: (time_steps,)}``."""
    return {name: m.gammas.mean(dim=1) for name, m in model.named_modules() if isinstance(m, BatchNormTT) and m.affine}


def mean_gamma_curve(model: nn.Module) -> torch.Tensor:
    """The layer-averaged gamma per step, ``(time_steps,)``."""
    curves = list(gamma_curves(model).values())
    if not curves:
        raise ValueError("the model has no affine BNTT layer: early exit needs learned gammas")
    return torch.stack(curves).mean(0)


def exit_step(curve: torch.Tensor, threshold: float = DEFAULT_EXIT_THRESHOLD) -> int:
    """Number of steps to run: the index of the first step whose mean gamma is below
    ``threshold`` (that step and later ones are skipped), at least 1; all steps if none is."""
    below = (curve < threshold).nonzero()
    return max(1, int(below[0])) if len(below) else len(curve)


@torch.no_grad()
def accuracy_per_step(
    model: nn.Module, loader, encode: Callable, device, max_batches: int | None = None
) -> torch.Tensor:
    """Test accuracy when exiting after 1, 2, ..., T steps, ``(T,)``, from one pass per batch
    (``model.forward_steps``)."""
    model.eval()
    correct, seen = None, 0
    for i, (images, labels) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        logits = model.forward_steps(encode(images.to(device)))
        hits = (logits.argmax(-1) == labels.to(device)).sum(1).cpu()
        correct = hits if correct is None else correct + hits
        seen += len(labels)
    return correct.double() / seen
