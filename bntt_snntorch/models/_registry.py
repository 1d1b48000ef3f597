"""A timm-style model registry: ``@register_model`` and ``create_model(name, **kwargs)``.

Each entry keeps its facts as metadata (:class:`ModelInfo`): whether it is an ANN (images in,
no time steps; trained to be converted) and whether its factory takes the input coding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..registry import Registry
from ..step_mode import set_step_mode


@dataclass(frozen=True)
class ModelInfo:
    """What the training code needs to know of a registered model."""

    name: str
    factory: Callable[..., nn.Module]
    ann: bool = False  # images (B, C, H, W) in, no time axis (converted to an SNN later)
    takes_encoding: bool = False  # the factory takes ``encode`` ("p" / "d"): its init depends on the coding
    takes_norm: bool = False  # the factory takes ``norm`` (a name of bntt_snntorch.list_norms())

    @property
    def takes_neuron(self) -> bool:
        """Spiking models take ``neuron`` (a name of :func:`bntt_snntorch.list_neurons`)."""
        return not self.ann


MODELS: Registry[ModelInfo] = Registry("model")


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    ann: bool = False,
    takes_encoding: bool = False,
    takes_norm: bool = False,
):
    """Register ``fn`` under its function name (``@register_model`` or ``@register_model(ann=True)``).
    Registering a name twice replaces the first entry with a warning (as timm does)."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(factory.__name__, ModelInfo(factory.__name__, factory, ann, takes_encoding, takes_norm))
        return factory

    return decorate if fn is None else decorate(fn)


def register_ann(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """``register_model(fn, ann=True)``: an ANN (for conversion)."""
    return register_model(fn, ann=True)


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``."""
    return MODELS.get(name)


def is_ann(name: str) -> bool:
    """Whether model ``name`` is an ANN (trained with ``--encode none``, then converted)."""
    return model_info(name).ann


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return MODELS.names()


def create_model(name: str, *, step_mode: str | None = None, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments that are ``None`` are dropped,
    so unset CLI flags keep the model's defaults.

    Common arguments: ``num_classes``, ``num_steps``, ``leak_mem``,
    ``in_channels``, ``image_size``. ``step_mode`` ("s" or "m") sets the step mode of
    the whole spiking model (:func:`bntt_snntorch.set_step_mode`); spiking models are
    built in "m".
    """
    model = model_info(name).factory(**{k: v for k, v in kwargs.items() if v is not None})
    return model if step_mode is None else set_step_mode(model, step_mode)
