"""Model registry: ``create_model(name, ...)``, ``list_models()``."""

from . import ann, bntt_vgg, rate_direct  # noqa: F401  (registers the models)
from ._registry import ModelInfo, create_model, is_ann, list_models, model_info, register_ann, register_model
from .ann import VGGAB, BinaryConv2d, BinaryLinear
from .spiking_net import SpikingNet

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "ModelInfo",
    "SpikingNet",
    "VGGAB",
    "create_model",
    "is_ann",
    "list_models",
    "model_info",
    "register_ann",
    "register_model",
]
