"""ANNs for ANN -> SNN conversion (Lu & Sengupta 2020): ``vgg15ab``, full precision or XNOR-binary.

``vgg15ab`` ("VGG-15, average pooling before ReLU"): 13 bias-free 3x3 convs
in 5 blocks (64,64 | 128,128 | 256x3 | 512x3 | 512x3); ``conv -> ReLU ->
Dropout`` inside a block, ``conv -> AvgPool(2) -> ReLU`` at its end; then
``Dropout -> Linear(units, 4096) -> ReLU -> Dropout -> Linear(4096, classes)``
with ``units = 512 * (image_size / 32) ** 2`` (512 on CIFAR, 25088 on
ImageNet). The module layout (``features``, ``classifier``, ``top_layer``)
and its state-dict keys are those of the original code, so its checkpoints
load. Init: Kaiming normal (fan-out) for convs, N(0, 0.01) for linears.

Binary variants binarize every layer but the first and the last
(:class:`BinaryConv2d`, :class:`BinaryLinear`). Models take images
``(B, C, H, W)`` and return logits ``(B, classes)``; train them with
``--encode none`` (the conversion recipes set it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_ann


class _BinarizeSTE(torch.autograd.Function):
    """``W -> sign(W) * mean(|W|)`` per output channel, with XNOR-Net's gradient.

    Backward (XNOR-Net-PyTorch's ``updateBinaryGradWeight``): the exact
    derivative of ``alpha * sign(W)`` with a straight-through sign clipped to
    ``|W| <= 1``, i.e. ``g * alpha * 1[|W| <= 1] + sign(W) * mean(g * sign(W))``,
    scaled by ``n * (1 - 1 / in_channels)`` (``n`` = weights per output channel).
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return binarize(weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (weight,) = ctx.saved_tensors
        dims = tuple(range(1, weight.dim()))
        n = weight[0].numel()
        alpha = weight.abs().mean(dims, keepdim=True)
        sign = weight.sign()
        through = grad * alpha * (weight.abs() <= 1)
        via_alpha = sign * (grad * sign).mean(dims, keepdim=True)
        return (through + via_alpha) * (n * (1.0 - 1.0 / weight.shape[1]))


def binarize(weight: torch.Tensor) -> torch.Tensor:
    """``sign(W) * alpha`` with ``alpha = mean(|W|)`` over each output channel (dim 0)."""
    dims = tuple(range(1, weight.dim()))
    return weight.sign() * weight.abs().mean(dims, keepdim=True)


class _Binary:
    """Mixin: a conv / linear whose forward uses the binarized weight.

    In training mode the real weights are first mean-centred per output
    channel and clamped to [-1, 1] in place (XNOR-Net's weight conditioning);
    the optimizer updates the real weights. ``effective_weight()`` is what the
    layer computes with (used by the conversion).
    """

    weight: nn.Parameter

    def effective_weight(self) -> torch.Tensor:
        return binarize(self.weight)

    def _binary_weight(self) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                dims = tuple(range(1, self.weight.dim()))
                self.weight.sub_(self.weight.mean(dims, keepdim=True)).clamp_(-1.0, 1.0)
        return _BinarizeSTE.apply(self.weight)


class BinaryConv2d(_Binary, nn.Conv2d):
    """``nn.Conv2d`` computing with ``sign(W) * alpha`` (see :class:`_Binary`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self._binary_weight(), self.bias)


class BinaryLinear(_Binary, nn.Linear):
    """``nn.Linear`` computing with ``sign(W) * alpha`` (see :class:`_Binary`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._binary_weight(), self.bias)


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight ``layer`` computes with: binarized for binary layers, else ``layer.weight``."""
    return layer.effective_weight() if isinstance(layer, _Binary) else layer.weight


class VGGAB(nn.Module):
    """A VGG with average pooling before the ReLU, no biases, dropout after every other ReLU.

    Args:
        blocks: channels per conv, one list per block (a block ends with AvgPool(2)).
        hidden: width of the hidden linear layer.
        binary: binarize all layers but the first conv and ``top_layer``.
        ceil_from: blocks from this index on pool with ``ceil_mode=True`` (the original's last three).
    Shapes: ``(B, in_channels, image_size, image_size)`` -> ``(B, num_classes)``.
    """

    def __init__(
        self,
        blocks,
        hidden: int,
        num_classes: int,
        in_channels: int,
        image_size: int,
        binary: bool = False,
        dropout: float = 0.1,
        ceil_from: int = 2,
    ):
        super().__init__()
        conv = BinaryConv2d if binary else nn.Conv2d
        linear = BinaryLinear if binary else nn.Linear
        features: list[nn.Module] = []
        channels, size = in_channels, image_size
        for b, block in enumerate(blocks):
            for i, out in enumerate(block):
                layer = nn.Conv2d if not features else conv
                features.append(layer(channels, out, 3, 1, 1, bias=False))
                channels = out
                if i < len(block) - 1:
                    features += [nn.ReLU(), nn.Dropout(dropout)]
            ceil = b >= ceil_from
            features += [nn.AvgPool2d(2, 2, ceil_mode=ceil), nn.ReLU()]
            size = -(-size // 2) if ceil else size // 2
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), linear(channels * size * size, hidden, bias=False), nn.ReLU(), nn.Dropout(dropout)
        )
        self.top_layer = nn.Linear(hidden, num_classes, bias=False)
        self.binary = binary
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"{type(self).__name__} expects images (B, C, H, W), got shape {tuple(x.shape)}; "
                "train it with --encode none"
            )
        return self.top_layer(self.classifier(self.features(x).flatten(1)))


VGG15AB_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
DIGITS_BLOCKS = [[32, 32], [64, 64], [128, 128]]


@register_ann
def vgg15ab(num_classes=100, in_channels=3, image_size=32, dropout=0.1) -> VGGAB:
    """Full-precision VGG-15 (avg pool before ReLU) of Lu & Sengupta 2020."""
    return VGGAB(VGG15AB_BLOCKS, 4096, num_classes, in_channels, image_size, binary=False, dropout=dropout)


@register_ann
def vgg15ab_binary(num_classes=100, in_channels=3, image_size=32, dropout=0.1) -> VGGAB:
    """XNOR-binary VGG-15: all convs and linears but the first conv and the output layer binary."""
    return VGGAB(VGG15AB_BLOCKS, 4096, num_classes, in_channels, image_size, binary=True, dropout=dropout)


@register_ann
def vggab_digits(num_classes=10, in_channels=1, image_size=8, dropout=0.1) -> VGGAB:
    """The same design scaled to 8x8 digits: convs 32,32 | 64,64 | 128,128, hidden 256."""
    return VGGAB(DIGITS_BLOCKS, 256, num_classes, in_channels, image_size, binary=False, dropout=dropout)


@register_ann
def vggab_digits_binary(num_classes=10, in_channels=1, image_size=8, dropout=0.1) -> VGGAB:
    """Binary :func:`vggab_digits` (first conv and output layer full precision)."""
    return VGGAB(DIGITS_BLOCKS, 256, num_classes, in_channels, image_size, binary=True, dropout=dropout)
