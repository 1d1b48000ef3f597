"""Export: a spiking network as a ``nir.NIRGraph``, each node written with its fidelity."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..definition import clamp_leak
from ..functional import LeakyParams
from ..membrane_norm import FoldedMPBNLeaky
from ..neurons import Leaky
from .common import DT, ENCODINGS, META, nir_module, pair
from .fidelity import FidelityReport, NodeFidelity
from .norms import norm_spec, per_step_affine
from .walk import Delay, Neuron, Skipped, Stateless, Synapse, model_parts


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


def _synapse_node(nir, part: Synapse, shape: tuple, out_shape: tuple, dt: float, signs: torch.Tensor | None = None):
    """The NIR node of a synapse (its norm folded in), its fidelity and our metadata; ``signs`` ``(C_out,)``: each
    output channel's values times its sign (a folded MPBN neuron after it, :func:`_folded_mpbn_node`)."""
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
        spec = norm_spec(part.norm, weight.shape[0], dims)
        meta["norm"] = spec if spec is not None else {"affine_k": ks, "affine_b": bs}
    if part.scale != 1.0:
        why += f"; input scale {part.scale:g} folded in"
    k = k * part.scale
    if signs is not None:
        k, b = k * signs.double(), b * signs.double()
        why += "; channels whose membrane norm has a negative weight negated (the neuron's membrane with them)"
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


def _lif_or_if(nir, beta, threshold: np.ndarray, shape: tuple, dt: float, path: str):
    """NIR's LIF (beta < 1) or IF (beta = 1) node, resetting to zero, with per-neuron ``threshold``; and its kind."""
    beta_full = np.broadcast_to(beta, shape).astype(np.float64)
    zeros = np.zeros(shape, np.float32)
    if (beta_full == 1).all():
        return nir.IF(r=np.full(shape, 1 / dt, np.float32), v_threshold=threshold, v_reset=zeros), "IF (beta = 1)"
    if (beta_full < 1).all():
        tau = dt / (1 - beta_full)
        node = nir.LIF(tau=tau.astype(np.float32), r=(tau / dt).astype(np.float32), v_leak=zeros,
                       v_threshold=threshold, v_reset=zeros)  # fmt: skip
        return node, f"LIF with tau = dt / (1 - beta), r = tau / dt, dt = {dt:g}"
    raise ValueError(f"cannot export {path}: beta mixes 1 (IF) and < 1 (LIF) within one layer")


def _folded_mpbn_node(nir, part: Neuron, shape: tuple, dt: float):
    """A :class:`~bntt_snntorch.membrane_norm.FoldedMPBNLeaky` as LIF / IF with per-neuron thresholds: channel c's
    threshold ``sign_c * theta'_c`` on the membrane ``sign_c * u`` (the synapse before it writes its channel times
    ``sign_c``), so a channel that fired below ``theta'`` fires above ``-theta'``; its fidelity and metadata."""
    m = part.module
    channel = (-1, *[1] * (len(shape) - 1))
    threshold = _full((m.signs * m.thresholds).view(channel), shape)
    beta = np.asarray(clamp_leak(torch.tensor(m.beta, dtype=torch.float64)))
    node, kind = _lif_or_if(nir, beta, threshold, shape, dt, part.path)
    node.metadata[META] = {
        "folded_mpbn": True,
        "beta": np.atleast_1d(np.float64(m.beta)),
        "threshold": np.atleast_1d(np.float64(m.threshold)),
        "thresholds": m.thresholds.detach().cpu().numpy(),
        "signs": m.signs.detach().cpu().numpy(),
        "reset_mechanism": m.reset_mechanism,
    }
    why = f"{kind}; MPBN's membrane norm folded into per-neuron thresholds"
    if m.reset_mechanism == "zero":
        return [(node, True, why + ", reset to zero in the step it fires")]
    return [(node, False, why + "; reset by subtraction written as NIR's reset to zero (v_reset = 0)")]


def _neuron_nodes(nir, part: Neuron, shape: tuple, dt: float):
    """The NIR node(s) of a neuron (LIF / IF, then a Scale for graded spikes), their fidelity, metadata."""
    if isinstance(part.module, FoldedMPBNLeaky):
        return _folded_mpbn_node(nir, part, shape, dt)
    p = _neuron_params(part.module, part.path)
    if p.reset_mechanism == "none":
        raise ValueError(f"cannot export {part.path}: a neuron without reset has no NIR node (NIR's LIF / IF reset)")
    beta = np.asarray(clamp_leak(torch.as_tensor(p.beta).detach().double()).cpu())
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
    node, kind = _lif_or_if(nir, beta, _full(p.threshold, shape), shape, dt, part.path)
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


def _stateless_node(nir, part: Stateless, shape: tuple):
    m = part.module
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if pair(m.output_size) != (1, 1):
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
        node = nir.AvgPool2d(kernel_size=np.array(pair(m.kernel_size)), stride=np.array(pair(stride)),
                             padding=np.array(pair(m.padding)))  # fmt: skip
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
    parts, readout = model_parts(model)
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
    for i, part in enumerate(parts):
        name = _node_name(part.path)
        if isinstance(part, Synapse):
            out = part.module(x)
            following = parts[i + 1].module if i + 1 < len(parts) else None
            signs = following.signs.detach().cpu() if isinstance(following, FoldedMPBNLeaky) else None
            add(name, *_synapse_node(nir, part, shape, tuple(out.shape[1:]), dt, signs))
        elif isinstance(part, Neuron):
            for i, (node, exact, why) in enumerate(_neuron_nodes(nir, part, shape, dt)):
                add(name if i == 0 else f"{name}_graded", node, exact, why)
            out = x
        elif isinstance(part, Skipped):
            why = f"{type(part.module).__name__}: the identity at inference, no node written"
            report.nodes.append(NodeFidelity(f"{name} (skipped)", True, why))
            continue
        elif isinstance(part, Delay):
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
