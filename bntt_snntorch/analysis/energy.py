"""Spike rates, operation counts and energy of a spiking network.

An ANN layer costs its multiply-accumulates (MACs) once per image; the
spiking layer accumulates (ACs) only for inputs that are non-zero::

    ACs = MACs_per_step * input_rate * T

where ``input_rate`` is the fraction of non-zero inputs of that synapse,
averaged over steps, batch and positions (after average pooling a unit is
non-zero when any of its spikes fired). A synapse fed analog values (the
first layer under direct coding) does real MACs at every step:
``MACs_per_step * T``. Energy uses 45 nm figures by default
(Horowitz 2014, as in the BNTT paper): 4.6 pJ / MAC, 0.9 pJ / AC (32-bit float).

Beside that rate estimate (the paper's), every layer also gets its exact count of the operations that
happen, ``effective_ops``: the products of a non-zero input and a non-zero weight, summed over steps
(taps on the zero padding of a convolution are none). That is NeuroBench's "effective" synaptic
operation count, which ``analyze --neurobench`` checks it against (:mod:`.neurobench`); the rate
estimate is larger by the padding taps a border neuron's kernel would cover.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..layers import SpikingBlock

#: Energy per operation at 45 nm CMOS (Horowitz 2014), pJ: a 32-bit multiply-accumulate and an accumulate.
ENERGY_45NM = {"mac_pj": 4.6, "ac_pj": 0.9}


@dataclass
class LayerOps:
    name: str
    macs: int  # per image and step (= the ANN layer's MACs per image)
    input_rate: float  # fraction of non-zero inputs
    output_rate: float | None  # spike rate of the layer's neurons (None for the readout)
    analog_input: bool
    num_steps: int
    effective_ops: float = 0.0  # per image over all steps: non-zero input x non-zero weight products, counted
    neurons: int = 0  # output units a step per image (the layer's neurons; the readout's outputs)

    @property
    def snn_ops(self) -> float:
        """MACs (analog input) or ACs (spike input) per image over all steps."""
        return self.macs * self.num_steps if self.analog_input else self.macs * self.input_rate * self.num_steps

    def energy(self, mac_pj: float = ENERGY_45NM["mac_pj"], ac_pj: float = ENERGY_45NM["ac_pj"]) -> dict:
        """``{"ann_pj", "snn_pj"}`` per image."""
        return {"ann_pj": self.macs * mac_pj, "snn_pj": self.snn_ops * (mac_pj if self.analog_input else ac_pj)}


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs per sample of a conv / linear layer given one output ``(N, ...)``."""
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return int(output[0].numel() * per_output)
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    raise TypeError(f"cannot count MACs of {type(module).__name__}")


def _effective_ops(synapse: nn.Module, x: torch.Tensor) -> float:
    """The products of a non-zero input of ``x`` ``(N, ...)`` and a non-zero weight that one call of
    ``synapse`` makes, summed over the N rows (the zero padding makes none): the layer run on the
    inputs' and weights' non-zero indicators, bias left out."""
    ones_in = (x != 0).to(torch.float32)
    ones_w = (synapse.weight != 0).to(torch.float32)
    if isinstance(synapse, nn.Conv2d):
        products = synapse._conv_forward(ones_in, ones_w, None)
    elif isinstance(synapse, nn.Linear):
        products = nn.functional.linear(ones_in, ones_w)
    else:
        raise TypeError(f"cannot count the operations of {type(synapse).__name__}")
    return products.sum(dtype=torch.float64).item()


def _is_spike_like(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x.abs() == 1)).all())


@torch.no_grad()
def count_operations(model: nn.Module, x_seq: torch.Tensor) -> list[LayerOps]:
    """Run ``model`` (a :class:`~bntt_snntorch.models.SpikingNet`) on ``x_seq`` ``(T, B, C, H, W)``
    once, multi-step, and count per synapse: MACs, input non-zero rate, output spike rate, and the
    exact effective operations per image."""
    records: dict[str, dict] = {}
    hooks = []
    T, batch = x_seq.shape[:2]

    def block_hook(name):
        def hook(block, inputs, output):
            x = inputs[0]
            records[name] = dict(
                macs=_macs(block.synapse, output[0]),
                input_rate=(x != 0).double().mean().item(),
                output_rate=(output != 0).double().mean().item(),
                analog=name == first and not _is_spike_like(x),
                effective_ops=_effective_ops(block.synapse, x.flatten(0, 1)) / batch,
                neurons=output[0, 0].numel(),
            )

        return hook

    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, SpikingBlock)]
    first = blocks[0][0] if blocks else None
    for name, block in blocks:
        hooks.append(block.register_forward_hook(block_hook(name)))
    was_training = model.training
    model.eval()
    try:
        spikes = model.features(x_seq)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    ops = [
        LayerOps(n, r["macs"], r["input_rate"], r["output_rate"], r["analog"], T, r["effective_ops"], r["neurons"])
        for n, r in records.items()
    ]
    readout = model.classifier
    ops.append(
        LayerOps(
            "classifier",
            _macs(readout, spikes[0]),
            (spikes != 0).double().mean().item(),
            None,
            False,
            T,
            _effective_ops(readout, spikes.flatten(0, 1)) / batch,
            readout.out_features,
        )
    )
    return ops


def average_operations(per_batch: list[list[LayerOps]], sizes: list[int] | None = None) -> list[LayerOps]:
    """Average the per-image figures of :func:`count_operations` results over batches, weighted by
    the batches' ``sizes`` (equal weights when omitted)."""
    sizes = sizes or [1] * len(per_batch)
    n = sum(sizes)

    def mean(values):
        return sum(v * w for v, w in zip(values, sizes)) / n

    merged = []
    for layers in zip(*per_batch):
        first = layers[0]
        merged.append(
            LayerOps(
                first.name,
                first.macs,
                mean([op.input_rate for op in layers]),
                None if first.output_rate is None else mean([op.output_rate for op in layers]),
                first.analog_input,
                first.num_steps,
                mean([op.effective_ops for op in layers]),
                first.neurons,
            )
        )
    return merged


def energy_table(
    ops: list[LayerOps], mac_pj: float = ENERGY_45NM["mac_pj"], ac_pj: float = ENERGY_45NM["ac_pj"]
) -> list[dict]:
    """Rows per layer plus a "total" row: MACs, SNN ops, rates, energies (pJ per image)."""
    rows = []
    for op in ops:
        e = op.energy(mac_pj, ac_pj)
        rows.append({**asdict(op), "snn_ops": op.snn_ops, **e})
    total = {k: sum(r[k] for r in rows) for k in ("macs", "snn_ops", "effective_ops", "neurons", "ann_pj", "snn_pj")}
    rows.append(
        {
            "name": "total",
            **total,
            "input_rate": None,
            "output_rate": None,
            "analog_input": None,
            "num_steps": ops[0].num_steps if ops else 0,
        }
    )
    return rows
