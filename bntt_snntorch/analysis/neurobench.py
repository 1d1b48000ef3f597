"""NeuroBench's metrics on our spiking networks (the ``[neurobench]`` extra: ``pip install
"bntt_snntorch[neurobench]"``).

NeuroBench measures a model through hooks: forward pre-hooks on its synapses (Linear / Conv layers:
their inputs, for synaptic operations) and forward hooks on its snnTorch neurons (the spikes, and the
membrane before and after each step, for activation sparsity and membrane updates). Our multi-step
path runs a layer's T steps as one fused node that calls no neuron module, and our step mode "s"
fires the neuron inside the block's step; NeuroBench's own ``SNNTorchModel`` would see no spike.
:class:`NeuroBenchNet` is the adapter: it presents a :class:`~bntt_snntorch.models.SpikingNet` as the
per-step snnTorch loop NeuroBench expects, data ``(B, T, ...)`` in, logits ``(B, classes)`` out, each
step through every synapse, BNTT step and neuron called as modules (the reference semantics: its
logits equal ``model(x_seq)``, tested).

:func:`neurobench_metrics` runs NeuroBench's own ``Benchmark`` with its static metrics (footprint,
connection sparsity, parameter count) and workload metrics (accuracy, activation sparsity overall and
by layer, synaptic operations, membrane updates), plus :class:`SynapticOperationsByLayer`: NeuroBench's
own count (``single_layer_MACs``) kept per layer, so that :func:`compare_with_ours` can set it beside
our :func:`~bntt_snntorch.analysis.count_operations` layer by layer.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator

import snntorch as snn
import torch
from torch import nn
from torch.utils.data import DataLoader

try:
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.abstract import AccumulatedMetric
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.utils.layers import single_layer_MACs
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        MembraneUpdates,
        SynapticOperations,
    )
    from neurobench.metrics.workload import ActivationSparsityByLayer as _NeuroBenchSparsityByLayer
    from neurobench.models import NeuroBenchModel
except ImportError as error:  # the optional extra
    raise ImportError(
        f"NeuroBench's metrics need the neurobench package ({error}); install it with: "
        'pip install "bntt_snntorch[neurobench]"'
    ) from error

from ..layers import SpikingBlock
from .energy import LayerOps


class NeuroBenchNet(NeuroBenchModel):
    """A :class:`~bntt_snntorch.models.SpikingNet` as NeuroBench's model: ``net(data)`` with data
    ``(B, T, ...)`` -> logits ``(B, classes)``, run step by step with each block's synapse, BNTT step
    and neuron called as modules (so NeuroBench's hooks see every step) and the readout averaged over
    the steps, as ``SpikingNet`` does. Neurons are found by their qualified names
    (``features.0.neuron``), so that NeuroBench's by-layer metrics tell the layers apart."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()
        self.add_activation_module(snn.SpikingNeuron)

    def __net__(self) -> nn.Module:
        return self.net

    def activation_layers(self) -> list[dict]:
        return [
            {"layer_name": name, "layer": m} for name, m in self.net.named_modules() if isinstance(m, snn.SpikingNeuron)
        ]

    @torch.no_grad()
    def __call__(self, data: torch.Tensor) -> torch.Tensor:
        x_seq = data.transpose(0, 1)
        membranes: dict[int, torch.Tensor] = {}
        total = 0
        with _neurons_per_step(self.net):
            for t, x in enumerate(x_seq):
                for i, layer in enumerate(self.net.features):
                    if isinstance(layer, SpikingBlock):
                        x, membranes[i] = _block_step(layer, x, t, membranes.get(i))
                    else:
                        x, _ = layer.step(x, t)
                total = total + self.net.classifier(x)
        return total / x_seq.shape[0]


def _block_step(block: SpikingBlock, x: torch.Tensor, t: int, mem: torch.Tensor | None):
    """:meth:`SpikingBlock.step` with the neuron called as a module: ``(B, ...)`` -> ``(spk, mem)``."""
    cur = block.synapse(x)
    if block.norm is not None:
        cur = block.norm.step(cur, t)
    if block.input_scale != 1.0:
        cur = cur * block.input_scale
    if mem is None:  # a new sample: snnTorch would otherwise carry the last batch's membrane on
        mem = torch.zeros_like(cur, dtype=torch.promote_types(cur.dtype, torch.float32))
    return block.neuron(cur, mem)


@contextlib.contextmanager
def _neurons_per_step(net: nn.Module) -> Iterator[None]:
    """Every neuron of ``net`` in step mode "s" (one step a call, snnTorch's forward) for the block."""
    neurons = [m for m in net.modules() if isinstance(m, snn.SpikingNeuron)]
    if not all(hasattr(m, "step_mode") for m in neurons):
        raise TypeError("NeuroBenchNet runs bntt_snntorch neurons (with a step_mode); got a plain snnTorch neuron")
    modes = [m.step_mode for m in neurons]
    try:
        for m in neurons:
            m.step_mode = "s"
        yield
    finally:
        for m, mode in zip(neurons, modes):
            m.step_mode = mode


class SynapticOperationsByLayer(AccumulatedMetric):
    """NeuroBench's ``SynapticOperations`` kept per layer: for each synapse (by qualified name),
    ``{"effective_macs", "effective_acs", "dense"}`` per sample, from NeuroBench's own
    ``single_layer_MACs`` on the inputs its hooks recorded (a layer's ops are ACs where its input is in
    {-1, 0, 1}, else MACs)."""

    def __init__(self):
        super().__init__(requires_hooks=True)
        self.reset()

    def reset(self) -> None:
        self.ops: dict[str, dict[str, int]] = defaultdict(lambda: {"effective_macs": 0, "effective_acs": 0, "dense": 0})
        self.samples = 0

    def __call__(self, model: NeuroBenchNet, preds, data) -> dict:
        names = {m: name for name, m in model.__net__().named_modules()}
        for hook in model.connection_hooks:
            counts = self.ops[names[hook.layer]]
            hook.hook.remove()  # the layer's copies must not feed the hook (as SynapticOperations does)
            for inputs in hook.inputs:
                inputs = inputs[0] if len(inputs) == 1 else inputs
                effective, spiking = single_layer_MACs(inputs, hook.layer)
                counts["effective_acs" if spiking else "effective_macs"] += effective
                counts["dense"] += single_layer_MACs(inputs, hook.layer, total=True)[0]
            hook.register_hook()
        self.samples += data[0].size(0)
        return self.compute()

    def compute(self) -> dict:
        return {name: {k: v / max(self.samples, 1) for k, v in c.items()} for name, c in self.ops.items()}


class ActivationSparsityByLayer(_NeuroBenchSparsityByLayer):
    """NeuroBench 2.3's ``ActivationSparsityByLayer`` (same name, same results) with the ``requires_hooks`` flag its
    ``__init__`` forgets to set (its manager reads the flag of every metric)."""

    def __init__(self):
        super().__init__()
        self._requires_hooks = True


STATIC_METRICS = [Footprint, ConnectionSparsity, ParameterCount]
WORKLOAD_METRICS = [
    ClassificationAccuracy,
    ActivationSparsity,
    ActivationSparsityByLayer,
    SynapticOperations,
    SynapticOperationsByLayer,
    MembraneUpdates,
]


def neurobench_metrics(
    model: nn.Module,
    loader: DataLoader,
    encode: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
    quiet: bool = True,
) -> dict:
    """NeuroBench's ``Benchmark(...).run()`` on ``model`` over ``loader``'s batches ``(images, labels)``,
    each encoded by ``encode`` (images ``(B, ...)`` -> ``(T, B, ...)``, e.g. the run's Poisson coder)
    and handed to NeuroBench as ``(B, T, ...)``. Returns its results under NeuroBench's names
    (``Footprint``, ``ConnectionSparsity``, ``ParameterCount``, ``ClassificationAccuracy``,
    ``ActivationSparsity``, ``ActivationSparsityByLayer``, ``SynapticOperations``,
    ``SynapticOperationsByLayer``, ``MembraneUpdates``)."""

    def preprocess(batch):
        images, labels = batch
        return encode(images.to(device)).transpose(0, 1), labels

    benchmark = Benchmark(
        NeuroBenchNet(model),
        loader,
        [preprocess],
        [lambda logits: logits.argmax(-1).cpu()],
        [STATIC_METRICS, WORKLOAD_METRICS],
    )
    results = benchmark.run(quiet=quiet)
    benchmark.workload_metric_manager.cleanup_hooks(benchmark.model)
    results["ActivationSparsityByLayer"] = dict(results["ActivationSparsityByLayer"])
    return results


#: Why a layer's operation kind can differ between NeuroBench and our count.
POOLED_INPUT = (
    "input is average-pooled spikes (multiples of 1/4): NeuroBench calls any input outside {-1, 0, 1} a MAC; "
    "we count accumulates (the pooled value is a spike count times a power of two)"
)


def compare_with_ours(results: dict, ours: list[LayerOps]) -> list[dict]:
    """Per layer: our operation kind and exact effective operations (``ours``, from
    :func:`~bntt_snntorch.analysis.count_operations` on the same batches, averaged) beside NeuroBench's
    (``results`` of :func:`neurobench_metrics`), our rate estimate, and activation sparsity both ways;
    ``note`` says why the kinds differ where they do. A "total" row ends the table."""
    by_layer = results["SynapticOperationsByLayer"]
    sparsity = results["ActivationSparsityByLayer"]
    rows = []
    for op in ours:
        synapse = op.name if op.name == "classifier" else f"{op.name}.synapse"
        theirs = by_layer[synapse]
        theirs_kind = "MAC" if theirs["effective_macs"] else "AC"
        our_kind = "MAC" if op.analog_input else "AC"
        neuron = sparsity.get(f"{op.name}.neuron")
        rows.append(
            {
                "layer": op.name,
                "ours_kind": our_kind,
                "ours_effective_ops": op.effective_ops,
                "ours_rate_estimate": op.snn_ops,
                "neurobench_kind": theirs_kind,
                "neurobench_effective_ops": theirs["effective_macs"] + theirs["effective_acs"],
                "neurobench_dense_ops": theirs["dense"],
                "ours_activation_sparsity": None if op.output_rate is None else 1 - op.output_rate,
                "neurobench_activation_sparsity": neuron,
                "note": POOLED_INPUT if theirs_kind != our_kind else "",
            }
        )
    spiking = [op for op in ours if op.output_rate is not None]
    ours_sparsity = 1 - sum(op.output_rate * op.neurons for op in spiking) / sum(op.neurons for op in spiking)
    rows.append(
        {
            "layer": "total",
            "ours_kind": "",
            "ours_effective_ops": sum(r["ours_effective_ops"] for r in rows),
            "ours_rate_estimate": sum(r["ours_rate_estimate"] for r in rows),
            "neurobench_kind": "",
            "neurobench_effective_ops": results["SynapticOperations"]["Effective_MACs"]
            + results["SynapticOperations"]["Effective_ACs"],
            "neurobench_dense_ops": results["SynapticOperations"]["Dense"],
            "ours_activation_sparsity": ours_sparsity,
            "neurobench_activation_sparsity": results["ActivationSparsity"],
            "note": "",
        }
    )
    return rows
