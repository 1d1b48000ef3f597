"""Batch Normalization Through Time and its training recipes for snnTorch.

Tiers, each importing only the ones before it: the library (functional, surrogate,
kernels, step_mode, through_time, bntt, neurons, layers, encoding, models, conversion, analysis,
data, files, plots), :mod:`bntt_snntorch.training` (``TrainConfig``, ``train``), and
:mod:`bntt_snntorch.commands` (the command lines). This module re-exports the public names.
"""

from . import encoding, functional, surrogate, utils
from .bntt import BatchNormTT, BatchNormTT1d, BatchNormTT2d
from .models import create_model, list_models
from .neurons import Leaky, MultiStepLeaky, StepNeuron, bntt_leaky, create_neuron, list_neurons, register_neuron
from .step_mode import set_step_mode
from .temporal_norm import (
    BatchNormOverTime1d,
    BatchNormOverTime2d,
    TemporalEffectiveBatchNorm1d,
    TemporalEffectiveBatchNorm2d,
    ThresholdDependentBatchNorm1d,
    ThresholdDependentBatchNorm2d,
    create_norm,
    list_norms,
    register_norm,
)
from .through_time import ThroughTime
from .training import TrainConfig, TrainResult, train

__version__ = "0.2.0"

__all__ = [
    "BatchNormOverTime1d",
    "BatchNormOverTime2d",
    "BatchNormTT",
    "BatchNormTT1d",
    "BatchNormTT2d",
    "Leaky",
    "MultiStepLeaky",
    "StepNeuron",
    "TemporalEffectiveBatchNorm1d",
    "TemporalEffectiveBatchNorm2d",
    "ThresholdDependentBatchNorm1d",
    "ThresholdDependentBatchNorm2d",
    "ThroughTime",
    "TrainConfig",
    "TrainResult",
    "bntt_leaky",
    "create_model",
    "create_neuron",
    "create_norm",
    "list_models",
    "list_neurons",
    "list_norms",
    "register_neuron",
    "register_norm",
    "set_step_mode",
    "train",
    "encoding",
    "functional",
    "surrogate",
    "utils",
]
