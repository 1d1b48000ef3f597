"""Batch Normalization Through Time and its training recipes for snnTorch.

Tiers, each importing only the ones before it: the library (definition, functional, surrogate,
kernels, step_mode, through_time, bntt, neurons, layers, encoding, models, conversion, nir_exchange,
analysis, data, files, plots), :mod:`bntt_snntorch.training` (``TrainConfig``, ``train``),
:mod:`bntt_snntorch.experiments` and :mod:`bntt_snntorch.commands` (the command lines). This module
re-exports the public names; the training tier's on first use, so that the layers and models import
without the data sets' libraries (tonic, torchvision's data sets).
"""

from . import encoding, functional, surrogate, utils
from .accumulated_norm import TemporalAccumulatedBatchNorm1d, TemporalAccumulatedBatchNorm2d
from .bntt import BatchNormTT, BatchNormTT1d, BatchNormTT2d
from .membrane_norm import MPBNLeaky, fold_thresholds
from .memory import set_memory
from .models import create_model, list_models
from .neurons import Leaky, MultiStepLeaky, StepNeuron, bntt_leaky, create_neuron, list_neurons, register_neuron
from .nir_exchange import FidelityReport, NIRNetwork, export_to_nir, import_from_nir
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

_TRAINING = ("TrainConfig", "TrainResult", "train")


def __getattr__(name: str):
    if name in _TRAINING:
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.2.0"

__all__ = [
    "BatchNormOverTime1d",
    "BatchNormOverTime2d",
    "BatchNormTT",
    "BatchNormTT1d",
    "BatchNormTT2d",
    "FidelityReport",
    "Leaky",
    "MPBNLeaky",
    "MultiStepLeaky",
    "NIRNetwork",
    "StepNeuron",
    "TemporalAccumulatedBatchNorm1d",
    "TemporalAccumulatedBatchNorm2d",
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
    "export_to_nir",
    "fold_thresholds",
    "import_from_nir",
    "list_models",
    "list_neurons",
    "list_norms",
    "register_neuron",
    "register_norm",
    "set_memory",
    "set_step_mode",
    "train",
    "encoding",
    "functional",
    "surrogate",
    "utils",
]
