"""NIR export and import that say exactly what they keep (``pip install 'bntt_snntorch[nir]'``).

NIR (the Neuromorphic Intermediate Representation, ``nir`` 1.0) writes a network as a graph of
continuous-time nodes (Affine, Conv2d, AvgPool2d, Flatten, LIF, IF, Scale, ...) that neuromorphic
hardware and other simulators read. :func:`export_to_nir` writes one of our spiking networks (every
spiking model of the registry, a converted SNN, or an ``nn.Sequential`` of our or snnTorch's layers);
:func:`import_from_nir` builds a :class:`NIRNetwork` from a graph. Every exported node is reported
``exact`` or ``approximate`` with the reason (:class:`FidelityReport`, also in the graph's metadata).

The discretisation is snnTorch's and SpikingJelly's, with step ``dt`` (default 1e-4 s): a leaky
neuron with leak ``beta`` is ``LIF(tau = dt / (1 - beta), r = tau / dt, v_leak = 0, v_reset = 0)``,
whose forward-Euler step is ``v_t = beta * v_(t-1) + I_t``; ``beta = 1`` is ``IF(r = 1 / dt)``.
NIR resets to ``v_reset`` in the step that fires:

* **exact**: conv / linear synapses; a normalisation whose scale and shift are the same at every
  step (BN over time, tdBN, BNTT whose per-step statistics and gammas are equal), folded into the
  synapse's weight and bias (equal up to float rounding); a reset-to-zero neuron that resets in the
  step it fires (``bntt_leaky_zero``, snnTorch's ``reset_delay=False``); graded spikes (a Scale
  node); average pooling; flatten; the readout.
* **approximate**: BNTT (and TEBN) with per-step parameters: NIR has no time-varying node, so the
  mean over the T steps of the per-channel scale ``k_t = gamma_t / sqrt(var_t + eps)`` and shift
  ``b_t = beta_t - mean_t * k_t`` is folded; reset by subtraction, and snnTorch's delayed reset,
  are written as NIR's reset to zero. The exact values (the synapse's own weight, the norm's state,
  the neuron's reset) are kept in the node's metadata (key ``"bntt_snntorch"``), from which
  :func:`import_from_nir` restores the network exactly; other importers read the NIR values.

The graph's input is one time step of what the first layer receives (spikes for Poisson coding,
the analog image for direct coding: ``graph.metadata["bntt_snntorch"]["input"]``); its output is
the readout's current at each step, and the prediction is the mean over the T steps
(``metadata["bntt_snntorch"]["readout"] == "mean over T"``), which NIR cannot express: the
consumer averages. Spikes fire when the membrane is strictly above the threshold.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .bntt import BatchNormTT
from .functional import LeakyParams
from .layers import SpikingBlock, TimeDistributed
from .models import SpikingNet
from .neurons import Leaky
from .step_mode import StepContainer, StepModule, set_step_mode
from .temporal_norm import NORM_REGISTRY, _SharedStatisticsNorm, create_norm

DT = 1e-4
META = "bntt_snntorch"  # the key of our metadata in a node's and in the graph's metadata
READOUT_MEAN = "mean over T"
ENCODINGS = {
    "p": "signed Poisson spikes in {-1, 0, 1} (probability |x|/2 each step), one step per call",
    "poisson": "signed Poisson spikes in {-1, 0, 1} (probability |x|/2 each step), one step per call",
    "d": "the analog image (direct coding), the same at every step",
    "direct": "the analog image (direct coding), the same at every step",
    "events": "one event frame (polarity channels) per step",
}


def nir_module():
    """The ``nir`` package, or an ImportError saying which extra installs it."""
    try:
        import nir
    except ImportError:
        raise ImportError("NIR export needs the nir extra: pip install 'bntt_snntorch[nir]'") from None
    return nir


# -- the report ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeFidelity:
    """One node of an exported graph: whether NIR's own values reproduce our layer, and why."""

    node: str
    exact: bool
    why: str


@dataclass
class FidelityReport:
    """Per node, ``exact`` or ``approximate`` and the reason; ``str(report)`` is a markdown table."""

    nodes: list[NodeFidelity] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Whether every node is exact (the NIR values alone reproduce the network)."""
        return all(n.exact for n in self.nodes)

    @property
    def approximate(self) -> list[NodeFidelity]:
        """The nodes that are not exact."""
        return [n for n in self.nodes if not n.exact]

    def to_dict(self) -> dict:
        return {n.node: {"exact": n.exact, "why": n.why} for n in self.nodes}

    @classmethod
    def of(cls, graph) -> FidelityReport:
        """The report stored in ``graph``'s metadata by :func:`export_to_nir`."""
        stored = graph.metadata.get(META, {}).get("fidelity", {})
        return cls([NodeFidelity(name, bool(v["exact"]), str(v["why"])) for name, v in stored.items()])

    def __str__(self) -> str:
        lines = ["| node | fidelity | why |", "|---|---|---|"]
        lines += [f"| {n.node} | {'exact' if n.exact else 'approximate'} | {n.why} |" for n in self.nodes]
        return "\n".join(lines)


# -- what a model is made of -----------------------------------------------------------------------------
@dataclass
class _Synapse:
    path: str
    module: nn.Module  # nn.Conv2d or nn.Linear
    norm: nn.Module | None = None
    scale: float = 1.0
    norm_path: str | None = None  # the norm's own name in the model


@dataclass
class _Neuron:
    path: str
    module: nn.Module


@dataclass
class _Norm:
    path: str
    module: nn.Module


@dataclass
class _Stateless:
    path: str
    module: nn.Module  # nn.AvgPool2d, nn.AdaptiveAvgPool2d(1) or nn.Flatten


@dataclass
class _Delay:
    path: str


@dataclass
class _Skipped:
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


def _parts(model: nn.Module) -> tuple[list, str | None]:
    """The model as a chain of parts and its readout ("mean over T" or None)."""
    from .conversion import ConvertedSNN

    if isinstance(model, SpikingNet):
        parts = []
        for i, layer in enumerate(model.features):
            parts += _walk(layer, f"features.{i}")
        return parts + [_Synapse("classifier", model.classifier)], READOUT_MEAN
    if isinstance(model, ConvertedSNN):
        parts = []
        for i, stage in enumerate(model.stages):
            parts += _walk(stage.synapse, f"stages.{i}.synapse")
            if stage.neuron is not None:
                parts.append(_Neuron(f"stages.{i}.neuron", stage.neuron))
                if not model.one_step:  # BindsNET's order: a spike reaches the next layer one step later
                    parts.append(_Delay(f"stages.{i}.delay"))
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
        return [_Synapse(f"{path}.synapse", module.synapse, module.norm, float(module.input_scale), f"{path}.norm"),
                _Neuron(f"{path}.neuron", module.neuron)]  # fmt: skip
    if isinstance(module, TimeDistributed):
        return _walk(module.module, f"{path}.module")
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return [_Synapse(path, module)]
    if _is_norm(module):
        return [_Norm(path, module)]
    if _is_neuron(module):
        return [_Neuron(path, module)]
    if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)):
        return [_Stateless(path, module)]
    if isinstance(module, SKIPPED):
        return [_Skipped(path, module)]
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
        if isinstance(part, _Norm):
            previous = out[-1] if out else None
            if not isinstance(previous, _Synapse) or previous.norm is not None:
                raise ValueError(
                    f"cannot export {part.path}: a normalisation must directly follow a conv / linear layer"
                )
            previous.norm, previous.norm_path = part.module, part.path
        else:
            out.append(part)
    return out


# -- normalisations as per-step affine maps -------------------------------------------------------------
def _norm_steps(norm: nn.Module) -> int:
    if isinstance(norm, nn.ModuleList):
        return len(norm)
    return getattr(norm, "time_steps", None) or 1


@torch.no_grad()
def per_step_affine(norm: nn.Module, dims: int, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(k, b)``, each ``(T, C)`` float64: the eval-mode normalisation at step ``t`` is
    ``k[t] * x + b[t]`` per channel (read off the layer by evaluating it in float64). ``channels``: C
    (default: read off the norm's batch norms). A norm that is no such map is a ValueError."""
    probe_norm = copy.deepcopy(norm).double().eval()
    if channels is None:
        bns = [m for m in probe_norm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            raise ValueError(f"{type(norm).__name__} has no batch norm to read the channel count from")
        channels = bns[0].num_features
    shape = (1, channels) + (1, 1) * (dims == 2)

    ramp = torch.arange(1.0, channels + 1, dtype=torch.float64).view(shape)  # a different value a channel

    def at(t: int, value: float) -> torch.Tensor:
        x = value * ramp
        if isinstance(probe_norm, nn.ModuleList):
            return probe_norm[t](x)
        if isinstance(probe_norm, StepModule):
            return probe_norm.step(x, t)
        return probe_norm(x)

    ks, bs = [], []
    for t in range(_norm_steps(norm)):
        zero, one, two = at(t, 0.0), at(t, 1.0), at(t, 2.0)
        k, b = ((one - zero) / ramp).flatten(), zero.flatten()
        if k.numel() != channels or not torch.allclose(
            two.flatten(), 2 * k * ramp.flatten() + b, rtol=1e-12, atol=1e-12
        ):
            raise ValueError(f"{type(norm).__name__} is not a per-channel affine map in eval mode; cannot fold it")
        ks.append(k.numpy())
        bs.append(b.numpy())
    return np.stack(ks), np.stack(bs)


def _norm_spec(norm: nn.Module, channels: int, dims: int) -> dict | None:
    """How our importer rebuilds ``norm`` exactly: its registry name, step count, the eps of its batch
    norms and its state, or None where the norm is not one the registry builds."""
    steps = _norm_steps(norm)
    for name in NORM_REGISTRY.names():
        try:
            built = create_norm(name, channels, steps, dims)
        except (TypeError, ValueError):
            continue
        if built is not None and type(built) is type(norm):
            state = {k.replace(".", "__"): np.atleast_1d(v.cpu().numpy()) for k, v in norm.state_dict().items()}
            eps = [m.eps for m in norm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            return {"name": name, "steps": steps, "dims": dims, "eps": np.array(eps), "state": state}
    return None


def _build_norm(spec: dict, channels: int) -> nn.Module:
    norm = create_norm(str(spec["name"]), channels, int(spec["steps"]), int(spec["dims"]))
    for m, eps in zip((m for m in norm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), spec["eps"]):
        m.eps = float(eps)
    shapes = {k: v.shape for k, v in norm.state_dict().items()}  # HDF5 keeps no 0-d arrays: back to the shapes
    state = {k.replace("__", "."): torch.as_tensor(np.asarray(v)) for k, v in spec["state"].items()}
    norm.load_state_dict({k: v.reshape(shapes[k]) for k, v in state.items()})
    return norm


# -- export ----------------------------------------------------------------------------------------------
def _neuron_params(module: nn.Module, path: str) -> LeakyParams:
    params = module.kernel_params() if callable(getattr(module, "kernel_params", None)) else None
    if params is not None:
        return params
    if isinstance(module, Leaky) or hasattr(module, "reset_mechanism"):  # snn.Leaky, or ours with inhibition
        detach = getattr(module, "detach_reset", False)
        return LeakyParams(module.beta, module.threshold, module.spike_grad, module.reset_mechanism,
                           module.reset_delay, module.graded_spikes_factor, detach)  # fmt: skip
    raise ValueError(
        f"cannot export {path} ({type(module).__name__}): it does not expose a leaky neuron's parameters "
        "(kernel_params() is None); NIR export writes leaky / integrate-and-fire neurons"
    )


def _full(value, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(torch.as_tensor(value).detach().cpu(), dtype=np.float64), shape).astype(
        np.float32
    )


def _synapse_node(nir, part: _Synapse, shape: tuple, out_shape: tuple, dt: float):
    """The NIR node of a synapse (its norm folded in), its fidelity and our metadata."""
    module, dims = part.module, 2 if isinstance(part.module, nn.Conv2d) else 1
    weight = module.weight.detach().double().cpu()
    bias = (
        module.bias.detach().double().cpu()
        if module.bias is not None
        else torch.zeros(weight.shape[0], dtype=torch.float64)
    )
    meta = {"weight": module.weight.detach().cpu().numpy()}
    if module.bias is not None:
        meta["bias"] = module.bias.detach().cpu().numpy()
    meta["input_scale"] = np.atleast_1d(np.float64(part.scale))
    exact, why = True, "the layer's weights"
    k = torch.ones(weight.shape[0], dtype=torch.float64)
    b = torch.zeros(weight.shape[0], dtype=torch.float64)
    if part.norm is not None:
        try:
            ks, bs = per_step_affine(part.norm, dims, weight.shape[0])
        except ValueError as err:
            raise ValueError(f"cannot export {part.norm_path} ({type(part.norm).__name__}): {err}") from None
        k, b = torch.from_numpy(ks.mean(0)), torch.from_numpy(bs.mean(0))
        name = type(part.norm).__name__
        if (ks == ks[0]).all() and (bs == bs[0]).all():
            why = f"{name} folded into weight and bias (the same scale and shift at every step)"
        else:
            exact = False
            why = (f"{name} has a scale and shift per step ({len(ks)} steps), which NIR cannot express: folded as "
                   "their mean over the steps (k_t = gamma_t / sqrt(var_t + eps), b_t = beta_t - mean_t * k_t); the "
                   "exact per-step values are in the node's metadata")  # fmt: skip
        spec = _norm_spec(part.norm, weight.shape[0], dims)
        meta["norm"] = spec if spec is not None else {"affine_k": ks, "affine_b": bs}
    if part.scale != 1.0:
        why += f"; input scale {part.scale:g} folded in"
    k = k * part.scale
    w = (weight * k.view(-1, *([1] * (weight.dim() - 1)))).float().numpy()
    folded_bias = (k * bias + b * part.scale).float().numpy()
    has_bias = module.bias is not None or part.norm is not None
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise ValueError(f"cannot export {part.path}: padding_mode={module.padding_mode!r} (NIR pads with zeros)")
        node = nir.Conv2d(input_shape=tuple(shape[1:]), weight=w, stride=module.stride, padding=module.padding,
                          dilation=module.dilation, groups=module.groups,
                          bias=folded_bias if has_bias else np.zeros(w.shape[0], np.float32))  # fmt: skip
    elif has_bias:
        node = nir.Affine(weight=w, bias=folded_bias)
    else:
        node = nir.Linear(weight=w)
    node.metadata[META] = meta
    return node, exact, why


def _neuron_nodes(nir, part: _Neuron, shape: tuple, dt: float):
    """The NIR node(s) of a neuron (LIF / IF, then a Scale for graded spikes), their fidelity, metadata."""
    p = _neuron_params(part.module, part.path)
    if p.reset_mechanism == "none":
        raise ValueError(f"cannot export {part.path}: a neuron without reset has no NIR node (NIR's LIF / IF reset)")
    beta = np.asarray(torch.as_tensor(p.beta).detach().double().clamp(0, 1).cpu())
    beta_full = np.broadcast_to(beta, shape).astype(np.float64)
    threshold = _full(p.threshold, shape)
    zeros = np.zeros(shape, np.float32)
    same_step = p.detach_reset or not p.reset_delay
    g = torch.as_tensor(p.graded_spikes_factor).detach().cpu()
    meta = {
        "beta": np.atleast_1d(beta),
        "threshold": np.atleast_1d(np.asarray(torch.as_tensor(p.threshold).detach().cpu())),
        "reset_mechanism": p.reset_mechanism,
        "reset_delay": bool(p.reset_delay),
        "detach_reset": bool(p.detach_reset),
        "graded_spikes_factor": np.atleast_1d(g.numpy()),
    }
    if (beta_full == 1).all():
        node = nir.IF(r=np.full(shape, 1 / dt, np.float32), v_threshold=threshold, v_reset=zeros)
        kind = "IF (beta = 1)"
    elif (beta_full < 1).all():
        tau = dt / (1 - beta_full)
        node = nir.LIF(tau=tau.astype(np.float32), r=(tau / dt).astype(np.float32), v_leak=zeros,
                       v_threshold=threshold, v_reset=zeros)  # fmt: skip
        kind = f"LIF with tau = dt / (1 - beta), r = tau / dt, dt = {dt:g}"
    else:
        raise ValueError(f"cannot export {part.path}: beta mixes 1 (IF) and < 1 (LIF) within one layer")
    node.metadata[META] = meta
    if p.reset_mechanism == "zero" and same_step:
        exact, why = True, f"{kind}; reset to zero in the step it fires"
    elif p.reset_mechanism == "zero":
        exact, why = (
            False,
            f"{kind}; snnTorch's delayed reset (one step late) written as NIR's reset in the step it fires",
        )
    else:
        exact, why = False, f"{kind}; reset by subtraction written as NIR's reset to zero (v_reset = 0)"
    nodes = [(node, exact, why)]
    if g.numel() != 1 or float(g) != 1.0:
        scale = nir.Scale(scale=_full(g, shape))
        scale.metadata[META] = {"graded_spikes_of": part.path}
        nodes.append((scale, True, "graded spikes: the spikes times the neuron's graded_spikes_factor"))
    return nodes


def _stateless_node(nir, part: _Stateless, shape: tuple):
    m = part.module
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if _pair(m.output_size) != (1, 1):
            raise ValueError(f"cannot export {part.path}: NIR has no adaptive pooling (only output_size=1 is exported)")
        window = np.array(shape[-2:])
        node = nir.AvgPool2d(kernel_size=window, stride=window, padding=np.array([0, 0]))
        return node, "global average pooling, as AvgPool2d over the whole map"
    if isinstance(m, nn.AvgPool2d):
        if m.ceil_mode or not m.count_include_pad or m.divisor_override is not None:
            raise ValueError(
                f"cannot export {part.path}: NIR's AvgPool2d has no ceil_mode / count_include_pad / divisor"
            )
        stride = m.stride if m.stride is not None else m.kernel_size
        node = nir.AvgPool2d(kernel_size=np.array(_pair(m.kernel_size)), stride=np.array(_pair(stride)),
                             padding=np.array(_pair(m.padding)))  # fmt: skip
        return node, "average pooling"
    start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim  # NIR's shapes have no batch dimension
    end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
    return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start, end_dim=end), "flatten"


def _node_name(path: str) -> str:
    return path.replace(".", "_")


@torch.no_grad()
def export_to_nir(model: nn.Module, sample: torch.Tensor, *, dt: float = DT, encoding: str | None = None):
    """``model`` as a ``nir.NIRGraph`` (Input -> nodes -> Output), with a :class:`FidelityReport` in
    ``graph.metadata["bntt_snntorch"]["fidelity"]`` (read it with ``FidelityReport.of(graph)``).

    ``model``: a :class:`~bntt_snntorch.SpikingNet` (every spiking model of the registry), a
    :class:`~bntt_snntorch.conversion.ConvertedSNN`, or an ``nn.Sequential`` of Conv2d / Linear /
    AvgPool2d / Flatten / Dropout, leaky neurons (ours or ``snn.Leaky``) and norms (BNTT, BN over
    time, tdBN, TEBN, batch norm; after the conv / linear they normalise). Exported in eval mode
    (running statistics), on a copy. ``sample``: one time step of input ``(B, C, H, W)`` / ``(B, F)``
    (only its shape is read). ``encoding``: "p" / "d", recorded as what the input is. A layer NIR
    cannot express (max pooling, a ReLU, a neuron without reset, ...) is a ``ValueError`` naming it.
    """
    nir = nir_module()
    model = copy.deepcopy(model).cpu().eval()
    parts, readout = _parts(model)
    shape = tuple(sample.shape[1:])
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    edges, report, previous = [], FidelityReport(), "input"

    def add(name: str, node, exact: bool, why: str) -> None:
        nonlocal previous
        nodes[name] = node
        edges.append((previous, name))
        report.nodes.append(NodeFidelity(name, exact, why))
        previous = name

    x = torch.zeros(1, *shape)
    for part in parts:
        name = _node_name(part.path)
        if isinstance(part, _Synapse):
            out = part.module(x)
            add(name, *_synapse_node(nir, part, shape, tuple(out.shape[1:]), dt))
        elif isinstance(part, _Neuron):
            for i, (node, exact, why) in enumerate(_neuron_nodes(nir, part, shape, dt)):
                add(name if i == 0 else f"{name}_graded", node, exact, why)
            out = x
        elif isinstance(part, _Skipped):
            why = f"{type(part.module).__name__}: the identity at inference, no node written"
            report.nodes.append(NodeFidelity(f"{name} (skipped)", True, why))
            continue
        elif isinstance(part, _Delay):
            out = x
            delay = "one step (dt): a spike reaches the next layer one step later"
            add(name, nir.Delay(delay=np.full(shape, dt, np.float32)), True, delay)
        else:
            out = part.module(x)
            node, what = _stateless_node(nir, part, shape)
            add(name, node, True, what)
        x, shape = out, tuple(out.shape[1:])
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((previous, "output"))
    meta = {"fidelity": report.to_dict(), "dt": dt, "readout": readout or "the last node's output at each step"}
    meta["input"] = ENCODINGS.get(encoding, "one time step of the first layer's input")
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={META: meta})


# -- import ----------------------------------------------------------------------------------------------
class _Scale(nn.Module):
    """``x * scale`` (NIR's Scale node)."""

    def __init__(self, scale: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class PerStepAffine(StepModule, nn.Module):
    """``k[t] * x + b[t]`` per channel at step ``t`` (``k``, ``b``: ``(T, C)``): how a norm the registry
    does not build (snnTorch's ModuleList BNTT, a plain batch norm) is restored from the metadata."""

    default_step_mode = "m"

    def __init__(self, k: np.ndarray, b: np.ndarray, dims: int):
        super().__init__()
        self.register_buffer("k", torch.as_tensor(np.asarray(k), dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(np.asarray(b), dtype=torch.float32))
        self.tail = (1,) * (dims - 1) * 2 if dims == 2 else ()

    def step(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Step ``t`` of ``(B, C, ...)``."""
        t = min(t, len(self.k) - 1)
        return x * self.k[t].view(-1, *self.tail) + self.b[t].view(-1, *self.tail)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, C, ...)``: step t of the sequence with the map of step t."""
        return torch.stack([self.step(x, t) for t, x in enumerate(x_seq)])


class StepDelay(StepModule, nn.Module):
    """A one-step delay (NIR's Delay of ``dt``): the output at step ``t`` is the input of step ``t - 1``
    (zeros at the first step). Step mode "m": ``(T, B, ...)``; "s": one step, the last input kept."""

    default_step_mode = "m"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            return torch.cat([torch.zeros_like(x[:1]), x[:-1]])
        previous = self.__dict__.get("_previous")
        self.__dict__["_previous"] = x
        return torch.zeros_like(x) if previous is None else previous

    def reset_state(self) -> None:
        """Forget the kept input."""
        self.__dict__.pop("_previous", None)

    def reset(self) -> None:
        """Same as :meth:`reset_state`."""
        self.reset_state()


class NIRNetwork(StepContainer, nn.Module):
    """A network built from a NIR graph by :func:`import_from_nir`: our step modules in a chain.

    Step mode "m" (default): ``net(x_seq)`` ``(T, B, ...)`` -> the graph's output at every step
    ``(T, B, ...)``; "s": ``net(x_t)`` one step, the state kept until :meth:`reset`.
    :meth:`logits` is the mean over T of the output (the readout of our exported networks).
    """

    default_step_mode = "m"

    def __init__(self, layers: list[nn.Module], readout: str | None = None):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.readout = readout
        set_step_mode(self, self.default_step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def reset_state(self) -> None:
        """Forget the single-step state of every layer."""
        from .utils import reset

        for layer in self.layers:
            reset(layer)

    def logits(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, ...)`` -> the mean over T of the output ``(B, classes)``."""
        return self.layers(x_seq).mean(0) if self.step_mode == "m" else self._per_step_mean(x_seq)

    def _per_step_mean(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.reset()
        return torch.stack([self.layers(x) for x in x_seq]).mean(0)


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
        padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
        module = nn.Conv2d(weight.shape[1] * int(node.groups), weight.shape[0], tuple(weight.shape[2:]),
                           stride=_pair(node.stride), padding=padding, dilation=_pair(node.dilation),
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
            norm = _build_norm(spec, weight.shape[0])
        else:
            norm = PerStepAffine(spec["affine_k"], spec["affine_b"], dims=2 if isinstance(node, nir.Conv2d) else 1)
    return module, norm, float(np.asarray(meta["input_scale"]).flat[0])


def _neuron_module(nir, node, dt: float, use_metadata: bool) -> Leaky:
    meta = node.metadata.get(META) if use_metadata else None
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
            layers.append(TimeDistributed(_Scale(node.scale)))
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


def _pair(value) -> tuple[int, int]:
    """An int or a pair, as NIR stores it, as a pair of ints."""
    values = tuple(int(v) for v in np.atleast_1d(np.asarray(value)))
    return values * 2 if len(values) == 1 else values


def _stateless_module(nir, node) -> nn.Module:
    if isinstance(node, nir.AvgPool2d):
        return nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
    start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
    end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
    return nn.Flatten(start, end)
