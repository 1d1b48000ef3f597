"""A timm-style model registry: ``@register_model`` and ``create_model(name, **kwargs)``.

Each entry keeps its facts as metadata (:class:`ModelInfo`): whether it is an ANN (images in,
no time steps; trained to be converted) and whether its factory takes the input coding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch.nn as nn

from ..registry import Registry, RegistryEntry
from ..step_mode import set_step_mode


@dataclass(frozen=True, kw_only=True)
class ModelInfo(RegistryEntry):
    """What the training code needs to know of a registered model."""

    ann: bool = False  # images (B, C, H, W) in, no time axis (converted to an SNN later)
    takes_encoding: bool = False  # the factory takes ``encode`` ("p" / "d"): its init depends on the coding
    takes_norm: bool = False  # the factory takes ``norm`` (a name of bntt_snntorch.list_norms())

    @property
    def takes_neuron(self) -> bool:
        """Spiking models take ``neuron`` (a name of :func:`bntt_snntorch.list_neurons`)."""
        return not self.ann


MODELS: Registry[ModelInfo] = Registry("model", ModelInfo)
register_model = MODELS.register  # @register_model, @register_model(takes_norm=True)
register_ann = partial(MODELS.register, ann=True)  # @register_ann: an ANN (for conversion)
model_info = MODELS.get
list_models = MODELS.names


def is_ann(name: str) -> bool:
    """Whether model ``name`` is an ANN (trained with ``--encode none``, then converted)."""
    return model_info(name).ann


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
