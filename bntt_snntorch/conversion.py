"""ANN -> SNN conversion with percentile threshold balancing (Lu & Sengupta 2020, after BindsNET).

A feed-forward ANN of ``Conv2d`` / ``Linear`` (full precision or binary),
``AvgPool2d``, ``ReLU``, ``Dropout`` and ``Flatten`` becomes a
:class:`ConvertedSNN`: every ReLU turns into an integrate-and-fire neuron
(``MultiStepLeaky``, an ``snn.Leaky`` with beta=1, threshold 1, reset by
subtraction), dropout is dropped, and the weights are rescaled layer by
layer, ``W_l <- W_l * lambda_{l-1} / lambda_l``, where ``lambda_l`` is the
``percentile`` of the l-th ReLU's outputs on training images
(:func:`activation_scales`). The output layer is scaled by ``lambda_{L-1}``
so that its summed input over T steps, divided by T, approximates the ANN's
logits. Typical use::

    scales = activation_scales(ann, train_batches, num_images=3500, percentile=99.9)
    snn_net = convert(ann, scales)
    out = snn_net(images, num_steps=100)          # (T, B, classes), multi-step
    out_t, state = snn_net.step(images, state)    # or one step at a time
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .models.ann import effective_weight
from .neurons import MultiStepLeaky

_SKIPPED = (nn.Dropout, nn.Identity)


class StreamingPercentile:
    """The ``q``-th percentile of all values passed to :meth:`update`, equal to
    ``numpy.percentile(all_values, q)`` (linear interpolation), without storing
    them all: it keeps only the largest ``n - floor((n - 1) q / 100)`` values.

    Args:
        q: percentile in [0, 100].
        total: how many values will be passed in all.
    """

    def __init__(self, q: float, total: int):
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {q}")
        if total < 1:
            raise ValueError(f"need at least one value, got total={total}")
        self.rank = (total - 1) * q / 100.0
        self.keep = total - math.floor(self.rank)
        self.total, self.seen = total, 0
        self.top = torch.empty(0)

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().flatten().float().cpu()
        self.seen += values.numel()
        if self.seen > self.total:
            raise ValueError(f"got {self.seen} values, more than the {self.total} announced")
        merged = torch.cat([self.top, values])
        self.top = torch.topk(merged, min(self.keep, merged.numel()), sorted=False).values

    def value(self) -> float:
        if self.seen != self.total:
            raise ValueError(f"got {self.seen} values, {self.total} were announced")
        ascending = torch.sort(self.top).values.double()
        low = ascending[0]
        frac = self.rank - math.floor(self.rank)
        high = ascending[1] if frac > 0 else low
        return float(low + frac * (high - low))


def _leaves(ann: nn.Module) -> list[nn.Module]:
    return [m for m in ann.modules() if not list(m.children())]


@torch.no_grad()
def activation_scales(
    ann: nn.Module, batches: Iterable[torch.Tensor], num_images: int, percentile: float = 99.9
) -> list[float]:
    """``lambda_l``: the ``percentile`` of each ReLU's outputs (zeros included, as in
    BindsNET) over ``num_images`` images, in layer order.

    ``batches`` yields images ``(B, C, H, W)`` (already on the ANN's device)
    until ``num_images`` have been seen; the ANN runs in eval mode (no dropout).
    """
    relus = [m for m in _leaves(ann) if isinstance(m, nn.ReLU)]
    trackers: list[StreamingPercentile | None] = [None] * len(relus)

    def hook(index):
        def record(module, inputs, output):
            if trackers[index] is None:
                trackers[index] = StreamingPercentile(percentile, num_images * output[0].numel())
            trackers[index].update(output)

        return record

    handles = [relu.register_forward_hook(hook(i)) for i, relu in enumerate(relus)]
    was_training = ann.training
    ann.eval()
    seen = 0
    try:
        for images in batches:
            images = images[: num_images - seen]
            ann(images)
            seen += len(images)
            if seen >= num_images:
                break
    finally:
        for h in handles:
            h.remove()
        ann.train(was_training)
    if seen < num_images:
        raise ValueError(f"threshold balancing asked for {num_images} images but the data gave {seen}")
    scales = [t.value() for t in trackers]
    for i, s in enumerate(scales):
        if s <= 0:
            raise ValueError(
                f"ReLU {i} is silent at the {percentile} percentile (lambda = {s}); "
                "use more --norm images or a higher --percentile"
            )
    return scales


def _plain_copy(layer: nn.Module, scale: float) -> nn.Module:
    """A plain conv / linear with ``effective_weight(layer) * scale`` (bias / its lambda handled by caller)."""
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
        )
    else:
        new = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    new = new.to(layer.weight.device)
    with torch.no_grad():
        new.weight.copy_(effective_weight(layer) * scale)
    return new


def if_neuron() -> MultiStepLeaky:
    """Integrate-and-fire: ``snn.Leaky(beta=1, threshold=1, reset_mechanism="subtract")``."""
    return MultiStepLeaky(1.0, threshold=1.0, reset_mechanism="subtract")


class ConvertedStage(nn.Module):
    """One layer of the converted net: ``synapse`` (conv or linear, with pooling / flatten)
    and, except for the output layer, an integrate-and-fire ``neuron``."""

    def __init__(self, synapse: nn.Sequential, neuron: MultiStepLeaky | None):
        super().__init__()
        self.synapse = synapse
        self.neuron = neuron


class ConvertedSNN(nn.Module):
    """A converted spiking network, runnable step by step (snnTorch style) or multi-step.

    The analog image is the input current of the first layer at every step.
    ``one_step=True``: an input crosses all layers within a step (snnTorch's
    natural order). ``one_step=False`` (BindsNET's default): a spike reaches
    the next layer one step later.

    Per step: ``out_t, state = net.step(x, state)`` with ``x`` ``(B, C, H, W)``,
    ``out_t`` ``(B, classes)`` the output layer's input (``state=None`` to start).
    Multi-step: ``net(x, num_steps)`` -> ``(T, B, classes)``, the same values,
    computed ``chunk_steps`` steps at a time (bounded memory).
    The prediction after ``t`` steps is ``argmax(out[:t].sum(0))``.
    """

    def __init__(self, stages: list[ConvertedStage], one_step: bool = True, scales: list[float] | None = None):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.one_step = one_step
        self.register_buffer("scales", torch.tensor(scales if scales is not None else [], dtype=torch.float64))

    def init_state(self) -> dict:
        """Membranes (None = zeros) and, for delayed propagation, last step's spikes."""
        n = len(self.stages)
        return {"mem": [None] * n, "spk": [None] * n}

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """One time step: image ``x`` ``(B, C, H, W)`` -> (output-layer input ``(B, classes)``, new state)."""
        state = self.init_state() if state is None else state
        mem, last_spk = list(state["mem"]), list(state["spk"])
        signal, spikes = x, []
        for i, stage in enumerate(self.stages):
            if i > 0 and not self.one_step:
                signal = last_spk[i - 1] if last_spk[i - 1] is not None else torch.zeros_like(signal)
            current = stage.synapse(signal)
            if stage.neuron is None:
                return current, {"mem": mem, "spk": spikes + [None]}
            signal, mem[i] = stage.neuron.step(current, mem[i])
            spikes.append(signal)
        raise RuntimeError("a ConvertedSNN ends with an output layer")

    def forward(self, x: torch.Tensor, num_steps: int, chunk_steps: int = 16) -> torch.Tensor:
        """``x`` ``(B, C, H, W)`` -> output-layer input at every step ``(T, B, classes)``."""
        if x.dim() < 2:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        first_current = self.stages[0].synapse(x)
        mem: list[torch.Tensor | None] = [None] * len(self.stages)
        last_spk: list[torch.Tensor | None] = [None] * len(self.stages)
        outputs = []
        for start in range(0, num_steps, chunk_steps):
            n = min(chunk_steps, num_steps - start)
            spikes = None
            for i, stage in enumerate(self.stages):
                if i == 0:
                    current = first_current.unsqueeze(0).expand(n, *first_current.shape)
                else:
                    if not self.one_step:
                        previous = last_spk[i - 1] if last_spk[i - 1] is not None else torch.zeros_like(spikes[0])
                        last_spk[i - 1] = spikes[-1]
                        spikes = torch.cat([previous.unsqueeze(0), spikes[:-1]])
                    flat = stage.synapse(spikes.flatten(0, 1))
                    current = flat.view(n, -1, *flat.shape[1:])
                if stage.neuron is None:
                    outputs.append(current)
                    break
                spikes, mem_seq = stage.neuron.multi_step(current, mem[i])
                mem[i] = mem_seq[-1]
        return torch.cat(outputs)


def convert(ann: nn.Module, scales: list[float], one_step: bool = True) -> ConvertedSNN:
    """The spiking twin of ``ann`` with weights balanced by ``scales`` (one per ReLU).

    Raises ``ValueError`` naming the layer when ``ann`` holds something that
    has no spiking equivalent here (max pooling, batch norm, other activations).
    """
    stages: list[ConvertedStage] = []
    pending: list[nn.Module] = []
    weight_layer = None
    previous_scale, relu_index, spatial = 1.0, 0, True
    for layer in _leaves(ann):
        if isinstance(layer, _SKIPPED):
            continue
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            if weight_layer is not None:
                raise ValueError(
                    f"two weight layers without a ReLU between them ({weight_layer} then {layer}); "
                    "fold them into one first"
                )
            if isinstance(layer, nn.Linear) and spatial:
                pending.append(nn.Flatten())
            spatial = isinstance(layer, nn.Conv2d)
            weight_layer = layer
            pending.append(layer)
        elif isinstance(layer, (nn.AvgPool2d, nn.Flatten)):
            spatial = spatial and not isinstance(layer, nn.Flatten)
            pending.append(layer)
        elif isinstance(layer, nn.ReLU):
            if weight_layer is None:
                raise ValueError("a ReLU without a conv / linear layer before it cannot be converted")
            if relu_index >= len(scales):
                raise ValueError(f"got {len(scales)} scales but the ANN has more ReLUs")
            scale = scales[relu_index]
            stages.append(ConvertedStage(_synapse(pending, weight_layer, previous_scale, scale), if_neuron()))
            previous_scale, relu_index, pending, weight_layer = scale, relu_index + 1, [], None
        else:
            raise ValueError(
                f"cannot convert a {type(layer).__name__} layer: supported are Conv2d, Linear, "
                "AvgPool2d, ReLU, Dropout, Flatten"
            )
    if weight_layer is None:
        raise ValueError("the ANN must end with a conv / linear output layer (no ReLU after it)")
    if relu_index != len(scales):
        raise ValueError(f"got {len(scales)} scales for {relu_index} ReLUs")
    stages.append(ConvertedStage(_synapse(pending, weight_layer, previous_scale, 1.0), None))
    return ConvertedSNN(stages, one_step, scales).to(next(ann.parameters()).device).eval()


def _synapse(layers: list[nn.Module], weight_layer: nn.Module, previous_scale: float, scale: float) -> nn.Sequential:
    """``layers`` with ``weight_layer`` replaced by a plain copy scaled by ``previous_scale / scale``
    (its bias by ``1 / scale``)."""
    out = []
    for layer in layers:
        if layer is weight_layer:
            copy = _plain_copy(layer, previous_scale / scale)
            if layer.bias is not None:
                with torch.no_grad():
                    copy.bias.copy_(layer.bias / scale)
            out.append(copy)
        else:
            out.append(layer)
    return nn.Sequential(*out)


@torch.no_grad()
def accuracy_over_time(
    snn_net: ConvertedSNN, images: torch.Tensor, labels: torch.Tensor, num_steps: int, chunk_steps: int = 16
) -> torch.Tensor:
    """Number of correct predictions after each step ``1..T`` -> ``(T,)`` int64."""
    out = snn_net(images, num_steps, chunk_steps)
    predictions = out.cumsum(0).argmax(-1)
    return (predictions == labels.unsqueeze(0)).sum(1)
