"""The spiking nets of "Rate Coding or Direct Coding" (Kim et al., ICASSP 2022).

No BN/BNTT, no bias, threshold 1, the seed neuron's soft detached reset and
triangle surrogate. The membrane update differs per model, as in that code
(``lam`` = ``--leak_mem``):

* ``rvd_mlp``, ``rvd_vgg5``: ``U = lam * U + (1 - lam) * I``
* ``rvd_vgg9``:              ``U = (1 - lam) * U + lam * I``

Xavier-uniform gains: MLP 2, VGG5 3 (direct) / 4 (Poisson), VGG9 5. The
registry names carry the ``rvd_`` prefix; ``--recipe rate-vs-direct`` maps the
paper's ``--arch mlp|vgg5|vgg9`` onto them.
"""

from __future__ import annotations

from torch import nn

from ..layers import SpikingBlock, TimeDistributed
from ..neurons import create_neuron
from . import bntt_vgg
from ._registry import register_model
from .spiking_net import SpikingNet

cfgs = {
    "vgg5": ([64, "A", 128, 128, "A"], 1024),
    "vgg9": (bntt_vgg.cfgs["vgg9"], bntt_vgg.hidden_features["vgg9"]),  # the BNTT VGG9's layers, without BNTT
}


def _block(synapse: nn.Module, lam: float, leak_on_input: bool, neuron: str) -> SpikingBlock:
    """``U = lam U + (1 - lam) I`` (``leak_on_input``) or ``U = (1 - lam) U + lam I``."""
    features = getattr(synapse, "out_channels", None) or getattr(synapse, "out_features", None)
    if leak_on_input:
        return SpikingBlock(synapse, None, create_neuron(neuron, lam, features=features), input_scale=1.0 - lam)
    return SpikingBlock(synapse, None, create_neuron(neuron, 1.0 - lam, features=features), input_scale=lam)


def _init(model: nn.Module, gain: float) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=gain)
    return model


def _create_vgg(
    cfg: str,
    gain: float,
    leak_on_input: bool,
    num_classes=10,
    num_steps=10,
    leak_mem=0.5,
    in_channels=3,
    image_size=32,
    neuron="bntt_leaky",
) -> SpikingNet:
    layers, hidden = cfgs[cfg]
    features: list[nn.Module] = []
    channels, size = in_channels, image_size
    for item in layers:
        if item == "A":
            features.append(TimeDistributed(nn.AvgPool2d(2)))
            size //= 2
        else:
            conv = nn.Conv2d(channels, item, 3, padding=1, bias=False)
            features.append(_block(conv, leak_mem, leak_on_input, neuron))
            channels = item
    features.append(TimeDistributed(nn.Flatten()))
    features.append(_block(nn.Linear(channels * size * size, hidden, bias=False), leak_mem, leak_on_input, neuron))
    model = SpikingNet(features, nn.Linear(hidden, num_classes, bias=False), num_steps, in_channels)
    return _init(model, gain)


@register_model
def rvd_mlp(
    num_classes=10, num_steps=10, leak_mem=0.5, in_channels=1, image_size=28, neuron="bntt_leaky"
) -> SpikingNet:
    """MLP: input -> FC 800 (LIF) -> FC classes; ``U = lam U + (1 - lam) I``; Xavier gain 2."""
    features = [
        TimeDistributed(nn.Flatten()),
        _block(nn.Linear(in_channels * image_size * image_size, 800, bias=False), leak_mem, True, neuron),
    ]
    model = SpikingNet(features, nn.Linear(800, num_classes, bias=False), num_steps, in_channels)
    return _init(model, 2.0)


@register_model(takes_encoding=True)
def rvd_vgg5(encode="p", **kwargs) -> SpikingNet:
    """VGG5: conv64, AP, conv128 x2, AP, FC 1024, FC classes; ``U = lam U + (1 - lam) I``;
    Xavier gain 3 (direct coding) or 4 (Poisson)."""
    return _create_vgg("vgg5", 3.0 if encode in ("d", "direct") else 4.0, True, **kwargs)


@register_model
def rvd_vgg9(**kwargs) -> SpikingNet:
    """The BNTT VGG9 without BNTT; ``U = (1 - lam) U + lam I``; Xavier gain 5."""
    return _create_vgg("vgg9", 5.0, False, **kwargs)


ARCH_NAMES = {"mlp": "rvd_mlp", "vgg5": "rvd_vgg5", "vgg9": "rvd_vgg9"}
