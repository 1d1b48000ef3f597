"""A timm-style model registry: ``@register_model`` and ``create_model(name, **kwargs)``."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_ANNS: set[str] = set()


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def register_ann(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register an ANN (images ``(B, C, H, W)`` in, no time steps; for conversion) under its name."""
    _ANNS.add(fn.__name__)
    return register_model(fn)


def is_ann(name: str) -> bool:
    """Whether model ``name`` is an ANN (trained with ``--encode none``, then converted)."""
    return name in _ANNS


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments that are ``None`` are dropped,
    so unset CLI flags keep the model's defaults.

    Common arguments: ``num_classes``, ``num_steps``, ``leak_mem``,
    ``in_channels``, ``image_size``.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})


def accepts(name: str, argument: str) -> bool:
    """Whether model ``name``'s factory takes ``argument`` (e.g. ``encode``)."""
    import inspect

    return argument in inspect.signature(_MODELS[name]).parameters
