"""The runtime modules an import builds: NIR's Scale, a per-step affine norm, a one-step delay, and
the network that chains them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..step_mode import StepContainer, StepModule, set_step_mode


class Scale(nn.Module):
    """``x * scale`` (NIR's Scale node)."""

    def __init__(self, scale: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class PerStepAffine(StepModule, nn.Module):
    """``k[t] * x + b[t]`` per channel at step ``t`` (``k``, ``b``: ``(T, C)``): how a norm the registry
    does not build (snnTorch's ModuleList BNTT, a plain batch norm) is restored from the metadata."""

    default_step_mode = "m"

    def __init__(self, k: np.ndarray, b: np.ndarray, dims: int):
        super().__init__()
        self.register_buffer("k", torch.as_tensor(np.asarray(k), dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(np.asarray(b), dtype=torch.float32))
        self.tail = (1,) * (dims - 1) * 2 if dims == 2 else ()

    def step(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Step ``t`` of ``(B, C, ...)``."""
        t = min(t, len(self.k) - 1)
        return x * self.k[t].view(-1, *self.tail) + self.b[t].view(-1, *self.tail)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, C, ...)``: step t of the sequence with the map of step t."""
        return torch.stack([self.step(x, t) for t, x in enumerate(x_seq)])


class StepDelay(StepModule, nn.Module):
    """A one-step delay (NIR's Delay of ``dt``): the output at step ``t`` is the input of step ``t - 1``
    (zeros at the first step). Step mode "m": ``(T, B, ...)``; "s": one step, the last input kept."""

    default_step_mode = "m"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            return torch.cat([torch.zeros_like(x[:1]), x[:-1]])
        previous = self.__dict__.get("_previous")
        self.__dict__["_previous"] = x
        return torch.zeros_like(x) if previous is None else previous

    def reset_state(self) -> None:
        """Forget the kept input."""
        self.__dict__.pop("_previous", None)

    def reset(self) -> None:
        """Same as :meth:`reset_state`."""
        self.reset_state()


class NIRNetwork(StepContainer, nn.Module):
    """A network built from a NIR graph by :func:`import_from_nir`: our step modules in a chain.

    Step mode "m" (default): ``net(x_seq)`` ``(T, B, ...)`` -> the graph's output at every step
    ``(T, B, ...)``; "s": ``net(x_t)`` one step, the state kept until :meth:`reset`.
    :meth:`logits` is the mean over T of the output (the readout of our exported networks).
    """

    default_step_mode = "m"

    def __init__(self, layers: list[nn.Module], readout: str | None = None):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.readout = readout
        set_step_mode(self, self.default_step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def reset_state(self) -> None:
        """Forget the single-step state of every layer."""
        from ..utils import reset

        for layer in self.layers:
            reset(layer)

    def logits(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, ...)`` -> the mean over T of the output ``(B, classes)``."""
        return self.layers(x_seq).mean(0) if self.step_mode == "m" else self._per_step_mean(x_seq)

    def _per_step_mean(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.reset()
        return torch.stack([self.layers(x) for x in x_seq]).mean(0)
