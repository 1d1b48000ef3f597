"""Batch Normalization Through Time and its training recipes for snnTorch."""

from . import encoding, functional, surrogate, utils
from .bntt import BatchNormTT, BatchNormTT1d, BatchNormTT2d
from .models import create_model, list_models
from .neurons import Leaky, MultiStepLeaky, bntt_leaky
from .through_time import ThroughTime

__version__ = "0.1.0"

__all__ = [
    "BatchNormTT",
    "BatchNormTT1d",
    "BatchNormTT2d",
    "Leaky",
    "MultiStepLeaky",
    "ThroughTime",
    "bntt_leaky",
    "create_model",
    "list_models",
    "encoding",
    "functional",
    "surrogate",
    "utils",
]
