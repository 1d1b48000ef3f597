"""Model registry: ``create_model(name, ...)``, ``list_models()``."""

from . import bntt_vgg, rate_direct  # noqa: F401  (registers the models)
from ._registry import accepts, create_model, list_models, register_model
from .spiking_net import SpikingNet

__all__ = ["create_model", "list_models", "register_model", "SpikingNet"]
