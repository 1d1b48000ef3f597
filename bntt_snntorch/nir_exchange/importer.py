"""Import: a ``nir.NIRGraph`` (or ``.nir`` file) as a :class:`~.modules.NIRNetwork` of our step
modules, exact where our export kept its metadata."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..layers import SpikingBlock, TimeDistributed
from ..membrane_norm import FoldedMPBNLeaky
from ..neurons import Leaky
from .common import DT, META, nir_module, pair
from .modules import NIRNetwork, PerStepAffine, Scale, StepDelay
from .norms import build_norm


def _scalar_or_tensor(values: np.ndarray) -> torch.Tensor:
    """A one-element array as a 0-d tensor (NIR files keep no 0-d arrays), else the array as a tensor."""
    values = np.asarray(values, dtype=np.float32)
    return torch.tensor(float(values.flat[0])) if values.size == 1 else torch.as_tensor(values)


def _uniform_or_array(values: np.ndarray) -> torch.Tensor:
    flat = np.asarray(values, dtype=np.float64)
    return (
        torch.tensor(float(flat.flat[0]))
        if (flat == flat.flat[0]).all()
        else torch.as_tensor(flat, dtype=torch.float32)
    )


def _synapse_module(nir, node, use_metadata: bool):
    """``(synapse, norm or None, input_scale)`` of a conv / linear node."""
    meta = node.metadata.get(META) if use_metadata else None
    weight = np.asarray(meta["weight"] if meta else node.weight, dtype=np.float32)
    bias = meta.get("bias") if meta else getattr(node, "bias", None)
    if isinstance(node, nir.Conv2d):
        padding = node.padding if isinstance(node.padding, str) else pair(node.padding)
        module = nn.Conv2d(weight.shape[1] * int(node.groups), weight.shape[0], tuple(weight.shape[2:]),
                           stride=pair(node.stride), padding=padding, dilation=pair(node.dilation),
                           groups=int(node.groups), bias=bias is not None)  # fmt: skip
    else:
        module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            module.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))
    if not meta:
        return module, None, 1.0
    norm = None
    if "norm" in meta:
        spec = meta["norm"]
        if "name" in spec:
            norm = build_norm(spec, weight.shape[0])
        else:
            norm = PerStepAffine(spec["affine_k"], spec["affine_b"], dims=2 if isinstance(node, nir.Conv2d) else 1)
    return module, norm, float(np.asarray(meta["input_scale"]).flat[0])


def _neuron_module(nir, node, dt: float, use_metadata: bool) -> Leaky | FoldedMPBNLeaky:
    meta = node.metadata.get(META) if use_metadata else None
    if meta and "folded_mpbn" in meta:  # our export of fold_thresholds' neuron: rebuilt as it was
        thresholds, signs = (torch.as_tensor(np.asarray(meta[key])) for key in ("thresholds", "signs"))
        beta, threshold = (float(np.asarray(meta[key]).flat[0]) for key in ("beta", "threshold"))
        return FoldedMPBNLeaky(thresholds, signs, beta, threshold, reset_mechanism=str(meta["reset_mechanism"]))
    if meta:
        return Leaky(
            _scalar_or_tensor(meta["beta"]),
            threshold=_scalar_or_tensor(meta["threshold"]),
            reset_mechanism=str(meta["reset_mechanism"]),
            reset_delay=bool(meta["reset_delay"]),
            graded_spikes_factor=_scalar_or_tensor(meta["graded_spikes_factor"]),
            detach_reset=bool(meta["detach_reset"]),
        )
    v_reset = np.asarray(node.v_reset if node.v_reset is not None else 0.0)
    if not np.allclose(v_reset, 0.0):
        raise ValueError(f"{type(node).__name__} with v_reset != 0 is not supported (our neurons reset to 0)")
    if isinstance(node, nir.IF):
        if not np.allclose(node.r, 1 / dt):
            raise ValueError(f"IF with r != 1 / dt ({1 / dt:g}) is not supported (dt={dt:g})")
        beta = np.ones_like(np.asarray(node.r, dtype=np.float64))
    else:
        if not np.allclose(node.v_leak, 0.0):
            raise ValueError("LIF with v_leak != 0 is not supported (our neurons leak to 0)")
        tau = np.asarray(node.tau, dtype=np.float64)
        if not np.allclose(node.r, tau / dt):
            raise ValueError(f"LIF with r != tau / dt is not supported (dt={dt:g}; pass the graph's dt)")
        beta = 1 - dt / tau
    return Leaky(_uniform_or_array(beta), threshold=_uniform_or_array(node.v_threshold), reset_mechanism="zero",
                 detach_reset=True)  # fmt: skip


def _chain(graph) -> list[str]:
    """The graph's node names from input to output; a ValueError unless it is a chain."""
    following = {}
    for a, b in graph.edges:
        if a in following:
            raise ValueError(f"node {a!r} has two successors: import_from_nir reads chains (Input -> ... -> Output)")
        following[a] = b
    inputs = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise ValueError(f"expected one Input node, found {len(inputs)}")
    order, name = [], inputs[0]
    while name in following:
        name = following[name]
        order.append(name)
    if len(order) != len(graph.nodes) - 1:
        raise ValueError("import_from_nir reads chains (Input -> ... -> Output); this graph branches or has cycles")
    return order


def import_from_nir(graph, *, dt: float | None = None, use_metadata: bool = True) -> NIRNetwork:
    """A :class:`NIRNetwork` from ``graph`` (a ``nir.NIRGraph`` or a path to a ``.nir`` file).

    Supported nodes: Input, Output, Affine, Linear, Conv2d, AvgPool2d, Flatten, Scale, Delay (one
    step), LIF and IF
    (``r = tau / dt`` and ``r = 1 / dt``, ``v_leak = v_reset = 0``), in a chain. ``dt``: the graph's
    (``metadata["bntt_snntorch"]["dt"]``), else 1e-4. With ``use_metadata`` (default) the values our
    export kept in the nodes' metadata are used, which restores BNTT and every reset exactly;
    ``use_metadata=False`` reads only what NIR says (what other importers see). Returned in eval mode
    (norms use the exported running statistics).
    """
    nir = nir_module()
    if not hasattr(graph, "nodes"):
        graph = nir.read(str(graph))
    meta = graph.metadata.get(META, {})
    dt = float(dt if dt is not None else meta.get("dt", DT))
    layers, pending = [], None
    for name in _chain(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            if pending is not None:
                layers.append(TimeDistributed(pending[0]))
            pending = _synapse_module(nir, node, use_metadata)
        elif isinstance(node, (nir.LIF, nir.IF)):
            neuron = _neuron_module(nir, node, dt, use_metadata)
            if pending is None:
                raise ValueError(f"neuron node {name!r} without a synapse before it is not supported")
            synapse, norm, scale = pending
            layers.append(SpikingBlock(synapse, norm, neuron, scale))
            pending = None
        elif isinstance(node, nir.Delay):
            if not np.allclose(np.asarray(node.delay), dt):
                raise ValueError(f"Delay node {name!r}: only a delay of one step (dt = {dt:g}) is supported")
            if pending is not None:
                layers.append(TimeDistributed(pending[0]))
                pending = None
            layers.append(StepDelay())
        elif isinstance(node, nir.Scale):
            if use_metadata and META in node.metadata:
                continue  # the neuron before it restores its graded spikes
            layers.append(TimeDistributed(Scale(node.scale)))
        elif isinstance(node, (nir.AvgPool2d, nir.Flatten)):
            if pending is not None:
                layers.append(TimeDistributed(pending[0]))
                pending = None
            layers.append(TimeDistributed(_stateless_module(nir, node)))
        elif isinstance(node, nir.Output):
            continue
        else:
            raise ValueError(f"node {name!r} is a {type(node).__name__}, which import_from_nir does not read")
    if pending is not None:
        if pending[1] is not None:
            raise ValueError("a normalised synapse without a neuron after it is not supported")
        layers.append(TimeDistributed(pending[0]))
    readout = meta.get("readout")
    return NIRNetwork(layers, str(readout) if readout is not None else None).eval()


def _stateless_module(nir, node) -> nn.Module:
    if isinstance(node, nir.AvgPool2d):
        return nn.AvgPool2d(pair(node.kernel_size), pair(node.stride), pair(node.padding))
    start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
    end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
    return nn.Flatten(start, end)
