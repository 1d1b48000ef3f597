"""Normalisations as per-step affine maps (what export folds) and as registry specs (what import
rebuilds exactly)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..step_mode import StepModule
from ..temporal_norm import NORM_REGISTRY, create_norm


def _norm_steps(norm: nn.Module) -> int:
    if isinstance(norm, nn.ModuleList):
        return len(norm)
    return getattr(norm, "time_steps", None) or 1


@torch.no_grad()
def per_step_affine(norm: nn.Module, dims: int, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(k, b)``, each ``(T, C)`` float64: the eval-mode normalisation at step ``t`` is
    ``k[t] * x + b[t]`` per channel (read off the layer by evaluating it in float64). ``channels``: C
    (default: read off the norm's batch norms). A norm that is no such map is a ValueError."""
    probe_norm = copy.deepcopy(norm).double().eval()
    if channels is None:
        bns = [m for m in probe_norm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            raise ValueError(f"{type(norm).__name__} has no batch norm to read the channel count from")
        channels = bns[0].num_features
    shape = (1, channels) + (1, 1) * (dims == 2)

    ramp = torch.arange(1.0, channels + 1, dtype=torch.float64).view(shape)  # a different value a channel

    def at(t: int, value: float) -> torch.Tensor:
        x = value * ramp
        if isinstance(probe_norm, nn.ModuleList):
            return probe_norm[t](x)
        if isinstance(probe_norm, StepModule):
            return probe_norm.step(x, t)
        return probe_norm(x)

    ks, bs = [], []
    for t in range(_norm_steps(norm)):
        zero, one, two = at(t, 0.0), at(t, 1.0), at(t, 2.0)
        k, b = ((one - zero) / ramp).flatten(), zero.flatten()
        if k.numel() != channels or not torch.allclose(
            two.flatten(), 2 * k * ramp.flatten() + b, rtol=1e-12, atol=1e-12
        ):
            raise ValueError(f"{type(norm).__name__} is not a per-channel affine map in eval mode; cannot fold it")
        ks.append(k.numpy())
        bs.append(b.numpy())
    return np.stack(ks), np.stack(bs)


def norm_spec(norm: nn.Module, channels: int, dims: int) -> dict | None:
    """How our importer rebuilds ``norm`` exactly: its registry name, step count, the eps of its batch
    norms and its state, or None where the norm is not one the registry builds."""
    steps = _norm_steps(norm)
    for name in NORM_REGISTRY.names():
        try:
            built = create_norm(name, channels, steps, dims)
        except (TypeError, ValueError):
            continue
        if built is not None and type(built) is type(norm):
            state = {k.replace(".", "__"): np.atleast_1d(v.cpu().numpy()) for k, v in norm.state_dict().items()}
            eps = [m.eps for m in norm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            return {"name": name, "steps": steps, "dims": dims, "eps": np.array(eps), "state": state}
    return None


def build_norm(spec: dict, channels: int) -> nn.Module:
    norm = create_norm(str(spec["name"]), channels, int(spec["steps"]), int(spec["dims"]))
    for m, eps in zip((m for m in norm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), spec["eps"]):
        m.eps = float(eps)
    shapes = {k: v.shape for k, v in norm.state_dict().items()}  # HDF5 keeps no 0-d arrays: back to the shapes
    state = {k.replace("__", "."): torch.as_tensor(np.asarray(v)) for k, v in spec["state"].items()}
    norm.load_state_dict({k: v.reshape(shapes[k]) for k, v in state.items()})
    return norm
