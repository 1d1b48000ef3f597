"""A model as a chain of parts NIR can write: synapses (with the norm after them), neurons, stateless
layers, delays and identities; a layer NIR cannot express is a ValueError naming it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..bntt import BatchNormTT
from ..layers import SpikingBlock, TimeDistributed
from ..models import SpikingNet
from ..temporal_norm import _SharedStatisticsNorm
from .common import READOUT_MEAN


@dataclass
class Synapse:
    path: str
    module: nn.Module  # nn.Conv2d or nn.Linear
    norm: nn.Module | None = None
    scale: float = 1.0
    norm_path: str | None = None  # the norm's own name in the model


@dataclass
class Neuron:
    path: str
    module: nn.Module


@dataclass
class Norm:
    path: str
    module: nn.Module


@dataclass
class Stateless:
    path: str
    module: nn.Module  # nn.AvgPool2d, nn.AdaptiveAvgPool2d(1) or nn.Flatten


@dataclass
class Delay:
    path: str


@dataclass
class Skipped:
    path: str
    module: nn.Module  # an identity at inference: reported, no node written


SKIPPED = (nn.Dropout, nn.Identity)  # identities at inference


def _is_norm(module: nn.Module) -> bool:
    if isinstance(module, (BatchNormTT, _SharedStatisticsNorm, nn.modules.batchnorm._BatchNorm)):
        return True  # ours, or a plain batch norm
    return isinstance(module, nn.ModuleList) and all(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module
    )  # snnTorch's BatchNormTT*d: a ModuleList of batch norms


def _is_neuron(module: nn.Module) -> bool:
    import snntorch as snn

    return isinstance(module, snn.Leaky) or callable(getattr(module, "kernel_params", None))


def model_parts(model: nn.Module) -> tuple[list, str | None]:
    """The model as a chain of parts and its readout ("mean over T" or None)."""
    from ..conversion import ConvertedSNN

    if isinstance(model, SpikingNet):
        parts = []
        for i, layer in enumerate(model.features):
            parts += _walk(layer, f"features.{i}")
        return parts + [Synapse("classifier", model.classifier)], READOUT_MEAN
    if isinstance(model, ConvertedSNN):
        parts = []
        for i, stage in enumerate(model.stages):
            parts += _walk(stage.synapse, f"stages.{i}.synapse")
            if stage.neuron is not None:
                parts.append(Neuron(f"stages.{i}.neuron", stage.neuron))
                if not model.one_step:  # BindsNET's order: a spike reaches the next layer one step later
                    parts.append(Delay(f"stages.{i}.delay"))
        return _attach_norms(parts), READOUT_MEAN
    if any(isinstance(m, nn.ReLU) for m in model.modules()) and not any(_is_neuron(m) for m in model.modules()):
        raise ValueError(
            f"{type(model).__name__} is an ANN and NIR has no ReLU node: convert it to a spiking network "
            "first (bntt-convert / bntt_snntorch.convert) and export that"
        )
    return _attach_norms(_walk(model, "")), None


def _walk(module: nn.Module, path: str) -> list:
    """The parts of ``module`` (named ``path``) in forward order."""
    if isinstance(module, SpikingBlock):
        return [Synapse(f"{path}.synapse", module.synapse, module.norm, float(module.input_scale), f"{path}.norm"),
                Neuron(f"{path}.neuron", module.neuron)]  # fmt: skip
    if isinstance(module, TimeDistributed):
        return _walk(module.module, f"{path}.module")
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return [Synapse(path, module)]
    if _is_norm(module):
        return [Norm(path, module)]
    if _is_neuron(module):
        return [Neuron(path, module)]
    if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)):
        return [Stateless(path, module)]
    if isinstance(module, SKIPPED):
        return [Skipped(path, module)]
    if isinstance(module, nn.Sequential):
        prefix = f"{path}." if path else ""
        return [part for name, child in module.named_children() for part in _walk(child, prefix + name)]
    raise ValueError(
        f"cannot export layer {path or '(the model)'} ({type(module).__name__}): NIR export supports Conv2d, "
        "Linear, AvgPool2d, Flatten, Dropout, leaky neurons (ours, snn.Leaky), BNTT and the other norms, "
        "SpikingBlock, TimeDistributed and nn.Sequential of these"
    )


def _attach_norms(parts: list) -> list:
    """Put every norm into the synapse before it."""
    out = []
    for part in parts:
        if isinstance(part, Norm):
            previous = out[-1] if out else None
            if not isinstance(previous, Synapse) or previous.norm is not None:
                raise ValueError(
                    f"cannot export {part.path}: a normalisation must directly follow a conv / linear layer"
                )
            previous.norm, previous.norm_path = part.module, part.path
        else:
            out.append(part)
    return out
