"""BNTT spiking VGGs of Kim & Panda (2020), seed-exact, and a small net for digits.

Convolutions 3x3, padding 1, no bias; BNTT after every synapse but the
readout (``norm=`` swaps it for another registered normalisation, see
:func:`bntt_snntorch.list_norms`); the seed neuron (:func:`bntt_snntorch.neurons.bntt_leaky`;
``neuron=`` swaps it for another registered neuron, see :func:`bntt_snntorch.list_neurons`);
average pooling on spikes; Xavier-uniform init with gain 2.
"""

from __future__ import annotations

from torch import nn

from ..bntt import SEED_EPS
from ..layers import SpikingBlock, TimeDistributed
from ..neurons import create_neuron
from ..temporal_norm import create_norm
from ._registry import register_model
from .spiking_net import SpikingNet

# Layer lists: ints are conv widths, "A" AvgPool2d(2), "G" AdaptiveAvgPool2d(1).
cfgs = {
    "vgg9": [64, 64, "A", 128, 128, "A", 256, 256, 256, "A"],
    "vgg11": [64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "G"],
    "digits": [32, 32, "A", 64, 64, "A"],
}
hidden_features = {"vgg9": 1024, "vgg11": 4096, "digits": 256}


def _create_bntt_vgg(
    cfg: str,
    num_classes: int = 10,
    num_steps: int = 25,
    leak_mem: float = 0.95,
    in_channels: int = 3,
    image_size: int = 32,
    norm: str = "bntt",
    neuron: str = "bntt_leaky",
) -> SpikingNet:
    options = {"eps": SEED_EPS} if norm == "bntt" else {}  # the BNTT code's eps; other norms keep their papers'
    features: list[nn.Module] = []
    channels, size = in_channels, image_size
    for item in cfgs[cfg]:
        if item == "A":
            features.append(TimeDistributed(nn.AvgPool2d(2)))
            size //= 2
        elif item == "G":
            features.append(TimeDistributed(nn.AdaptiveAvgPool2d(1)))
            size = 1
        else:
            conv = nn.Conv2d(channels, item, kernel_size=3, padding=1, bias=False)
            bn = create_norm(norm, item, num_steps, dims=2, **options)
            features.append(SpikingBlock(conv, bn, create_neuron(neuron, leak_mem, features=item)))
            channels = item
    if size < 1:
        raise ValueError(f"image_size={image_size} is too small for {cfg}: it pools to nothing")
    hidden = hidden_features[cfg]
    features.append(TimeDistributed(nn.Flatten()))
    fc = nn.Linear(channels * size * size, hidden, bias=False)
    bn = create_norm(norm, hidden, num_steps, dims=1, **options)
    features.append(SpikingBlock(fc, bn, create_neuron(neuron, leak_mem, features=hidden)))
    model = SpikingNet(features, nn.Linear(hidden, num_classes, bias=False), num_steps, in_channels)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=2)
    return model


@register_model(takes_norm=True)
def vgg9(**kwargs) -> SpikingNet:
    """BNTT VGG9: conv64 x2, AP, conv128 x2, AP, conv256 x3, AP, FC 1024 (BNTT+LIF), FC classes."""
    return _create_bntt_vgg("vgg9", **kwargs)


@register_model(takes_norm=True)
def vgg11(**kwargs) -> SpikingNet:
    """BNTT VGG11: conv64, AP, conv128, AP, conv256 x2, AP, conv512 x2, AP, conv512 x2, GAP, FC 4096, FC classes."""
    return _create_bntt_vgg("vgg11", **kwargs)


@register_model(takes_norm=True)
def bntt_digits(**kwargs) -> SpikingNet:
    """A small BNTT conv net for 8x8 digits: conv32 x2, AP, conv64 x2, AP, FC 256, FC classes."""
    kwargs = {"in_channels": 1, "image_size": 8, **kwargs}
    return _create_bntt_vgg("digits", **kwargs)
