"""BNTT's normalise-and-scale fused into the leaky scan: one autograd node that keeps only the synapse output.

For a BNTT layer followed by a leaky neuron, the multi-step path would keep the synapse output
(for batch norm's backward), the normalised current and the neuron's ``h`` and membrane, each full
size. Here step ``t`` is normalised on the fly and fed to the neuron; backward recomputes the
current and ``h`` from the saved synapse output and the per-(t, c) statistics, walks the reverse
scan, and turns ``dL/dcurrent`` into batch norm's input and gamma gradients step by step::

    current_t = s * gamma_t * (x_t - mean_t) / sqrt(var_t + eps)     (per channel)

(``s`` is the block's input scale, folded into gamma). Three ways to run the steps (the
:class:`~bntt_snntorch.kernels.plan.Plan` says which):

* ``bntt-eager``: batch norm's own kernels per step (so values round as the per-step reference's,
  bf16 included) and the neuron definition;
* ``bntt-compiled``: each step as one TorchInductor-compiled loop (:mod:`.compiled_steps`);
* ``bntt-c``: one C loop nest per direction, generated from the definition (:mod:`.c_bntt`);
* ``bntt-triton``: one Triton kernel per direction (:mod:`.triton_bntt`).

Saved: ``x`` in its own dtype (bf16 under autocast) plus ``(T, C)`` statistics, all through
``ctx.save_for_backward``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import definition as D
from . import compiled_steps
from .c_definition import Build
from .fallback import fallback_errors, record_failure
from .torch_scan import NeuronSpec, NeuronTensors, backward_scan, forward_scan, params_tensor


class BNTTNorm(NamedTuple):
    """What the fused node normalises with: ``weight`` ``(T, C)`` (the per-step gammas, or None for
    ``affine=False``), ``mean`` / ``var`` ``(T, C)`` (the batch's biased statistics in training, the
    running ones in eval), ``eps``, the block's input ``scale``, and ``training`` (whether the
    statistics depend on the input, for the backward)."""

    weight: torch.Tensor | None
    mean: torch.Tensor
    var: torch.Tensor
    eps: float
    scale: float = 1.0
    training: bool = True


@dataclass(frozen=True)
class BNTTSpec:
    """The static part of one fused BNTT block call (hashable)."""

    neuron: NeuronSpec
    eps: float
    scale: float
    training: bool
    path: str


def node_parts(norm: BNTTNorm, p, path: str, device, state: torch.dtype) -> tuple[NeuronTensors, BNTTSpec]:
    """The neuron's tensors (LeakyParams ``p`` in ``state`` on ``device``) and the static spec of a fused BNTT
    node normalising with ``norm`` on ``path``."""
    spec = BNTTSpec(NeuronSpec.of(p), norm.eps, float(norm.scale), norm.training, path)
    return NeuronTensors.of(p, device, state), spec


def _per_channel(v: torch.Tensor, step_dim: int) -> torch.Tensor:
    """``(T, C)`` -> ``(T, C, 1, ...)``: broadcastable against one step ``(B, C, ...)`` at index ``t``."""
    return v.view(*v.shape, *([1] * (step_dim - 2)))


def coefficients(weight, mean, var, eps: float, scale: float):
    """``(rstd, k, shift)``, each ``(T, C)``: the definition's :func:`~bntt_snntorch.definition.inverse_std` and
    :func:`~bntt_snntorch.definition.coefficients` (``weight`` None: ``affine=False``)."""
    rstd = D.inverse_std(var, eps)
    k, shift = D.coefficients(mean, rstd, 1.0 if weight is None else weight.to(var.dtype), scale)
    return rstd, k, shift


def _scaled_weight(weight, channels: int, scale: float, like: torch.Tensor):
    """Per-step batch-norm weights ``(T, C)`` with the input scale folded in (``None`` for 1)."""
    if weight is None:
        return None if scale == 1.0 else torch.full((like.shape[0], channels), scale, device=like.device)
    return weight if scale == 1.0 else weight * scale


def _eager_currents(x_seq, w, mean, var, eps: float):
    """``t -> current_t`` ``(B, C, ...)``: batch norm of step ``t`` with the given statistics, in
    ``x_seq``'s dtype (bf16 under autocast, as the per-step batch norm's output)."""

    def current_at(t):
        return torch.batch_norm(x_seq[t], None if w is None else w[t], None, mean[t], var[t], False, 0.0, eps, False)

    return current_at


def _eager_forward(x_seq, weight, mean, var, tensors: NeuronTensors, spec: BNTTSpec, keep: str) -> torch.Tensor:
    """The eager forward: ``keep`` ("spk" in ``x_seq``'s dtype, or "h" in the state's), ``(T, B, ...)``."""
    w = _scaled_weight(weight, x_seq.shape[2], spec.scale, mean)
    mem0 = torch.zeros(x_seq.shape[1:], dtype=mean.dtype, device=x_seq.device)
    buffer = torch.empty(x_seq.shape, dtype=x_seq.dtype if keep == "spk" else mean.dtype, device=x_seq.device)
    forward_scan(_eager_currents(x_seq, w, mean, var, spec.eps), x_seq.shape[0], mem0, tensors, spec.neuron,
                 {keep: buffer})  # fmt: skip
    return buffer


def batch_norm_backward_steps(x_seq, weight, mean, var, eps: float, scale: float, training: bool, need_weight: bool):
    """BNTT's backward step by step, with batch norm's own kernel: ``(grad_x, grad_weight, grad_x_at)``;
    ``grad_x_at(t, dcur)`` turns step ``t``'s current gradient ``dcur`` into its rows of ``grad_x``
    ``(T, B, C, ...)`` and (``need_weight``) ``grad_weight`` ``(T, C)``."""
    w = _scaled_weight(weight, x_seq.shape[2], scale, mean)
    rstd = D.inverse_std(var, eps)
    grad_x = torch.empty(x_seq.shape, dtype=x_seq.dtype, device=x_seq.device)
    grad_weight = torch.empty_like(mean) if need_weight else None

    def grad_x_at(t, dcur):
        gx, gw, _ = torch.ops.aten.native_batch_norm_backward(
            dcur.to(x_seq.dtype), x_seq[t], None if w is None else w[t], mean[t], var[t], mean[t], rstd[t],
            training, eps, [True, need_weight, False],
        )  # fmt: skip
        grad_x[t].copy_(gx)
        if need_weight:
            grad_weight[t] = gw * scale

    return grad_x, grad_weight, grad_x_at


def _eager_backward(ctx, grad_spk, x_seq, weight, mean, var, tensors: NeuronTensors, need_weight: bool):
    spec: BNTTSpec = ctx.spec
    h_seq = _eager_forward(x_seq, weight, mean, var, tensors, spec, "h")
    grad_x, grad_weight, grad_x_at = batch_norm_backward_steps(
        x_seq, weight, mean, var, spec.eps, spec.scale, spec.training, need_weight
    )
    mem0 = torch.zeros(x_seq.shape[1:], dtype=mean.dtype, device=x_seq.device)
    need = ctx.needs_input_grad[4], ctx.needs_input_grad[5]
    _, grad_beta, grad_theta = backward_scan(grad_spk, None, h_seq, mem0, tensors, spec.neuron, need, grad_x_at)
    return grad_x, grad_weight, grad_beta, grad_theta


def _compiled_forward(x_seq, weight, mean, var, tensors: NeuronTensors, spec: BNTTSpec, mem0=None):
    """The forward as one compiled sequence (:func:`.compiled_steps.bntt_forward_sequence`) from membrane
    ``mem0`` (float32 ``(B, ...)``; None: zeros): ``(spikes (T, B, ...), last membrane)``."""
    variant = spec.neuron.variant
    run = compiled_steps.compiled("forward", (variant, x_seq.dtype, x_seq.dim(), x_seq.shape[0]))
    _, k, shift = coefficients(weight, mean, var, spec.eps, spec.scale)
    step_dim = x_seq.dim() - 1
    m0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device) if mem0 is None else mem0
    beta = D.clamp_leak(tensors.beta)
    k_b, shift_b = _per_channel(k, step_dim), _per_channel(shift, step_dim)
    return run(x_seq, k_b, shift_b, m0, beta, tensors.theta, tensors.g, variant.codes)


def _compiled_backward(spec: BNTTSpec, grad_spk, x_seq, weight, mean, var, tensors: NeuronTensors, mem0=None,
                       through_time: bool = True):  # fmt: skip
    """``(grad_x, sum_xhat (T, C), grad_beta, grad_theta)`` as one compiled sequence (scalar beta / theta),
    for the forward from ``mem0``; ``through_time=False``: each step's gradient through its own input only
    (online rules: no gradient carried from step t + 1 to step t)."""
    variant = spec.neuron.variant
    key = (variant, spec.neuron.surrogate, spec.training, through_time, x_seq.dtype, x_seq.dim(), x_seq.shape[0])
    run = compiled_steps.compiled("backward", key)
    rstd, k, _ = coefficients(weight, mean, var, spec.eps, spec.scale)
    m0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device) if mem0 is None else mem0
    beta = D.clamp_leak(tensors.beta)
    grad_x, sums, d_beta, d_theta = run(
        grad_spk, x_seq, m0, mean, rstd, k, beta, tensors.theta, tensors.g, spec.neuron.surrogate, variant.codes,
        spec.training, through_time,
    )  # fmt: skip
    grad_beta = (d_beta * D.leak_gradient_mask(tensors.beta)).reshape(tensors.beta.shape)
    return grad_x, sums, grad_beta, d_theta.reshape(tensors.theta.shape)


class LoopArguments(NamedTuple):
    """What the fused loops (C and Triton) take besides the sequence: ``k``, ``shift`` and ``rstd`` ``(T, C)``
    (contiguous), ``params`` ``[beta, theta, g]``, the variant's ``codes`` ``(RESET, DELAYED, SAME)`` and the
    surrogate ``(SURR, a, b)``."""

    k: torch.Tensor
    shift: torch.Tensor
    rstd: torch.Tensor
    params: torch.Tensor
    codes: tuple[int, bool, int]
    surrogate: tuple[int, float, float]


def _neuron_arguments(tensors: NeuronTensors, spec: BNTTSpec) -> tuple[torch.Tensor, tuple, tuple]:
    """The loops' neuron arguments of block ``spec``: ``(params [beta, theta, g], codes, surrogate (SURR, a, b))``."""
    neuron = spec.neuron
    return params_tensor(tensors), neuron.variant.codes, (neuron.surrogate.code, *map(float, neuron.surrogate.args()))


def loop_arguments(weight, mean, var, tensors: NeuronTensors, spec: BNTTSpec) -> LoopArguments:
    """The :class:`LoopArguments` of the block ``spec`` normalising with ``weight`` / ``mean`` / ``var`` ``(T, C)``."""
    rstd, k, shift = coefficients(weight, mean, var, spec.eps, spec.scale)
    return LoopArguments(k.contiguous(), shift.contiguous(), rstd.contiguous(), *_neuron_arguments(tensors, spec))


def _c_forward(x_seq, args: LoopArguments, training: bool, mem0=None, through_time=True, last=True):
    """The forward as the C loops (:mod:`.c_bntt`) with ``args`` (:func:`loop_arguments`) from membrane ``mem0``
    (float32 ``(B, ...)``; None: zeros): ``(spikes (T, B, ...), last membrane (None unless last))``."""
    from . import c_bntt

    m0 = None if mem0 is None else mem0.contiguous()
    build = Build(args.codes, args.surrogate, training, through_time)
    return c_bntt.forward(x_seq.contiguous(), args.k, args.shift, m0, args.params, build, last)


def _c_forward_with_statistics(x_seq, weight, tensors: NeuronTensors, spec: BNTTSpec, running=None):
    """Training's forward as the C loops that also compute the batch statistics, in the same pass over each
    channel: ``(spikes (T, B, ...), mean (T, C), var (T, C), LoopArguments)`` — equal to
    :func:`~.c_bntt.batch_statistics`, then :func:`loop_arguments`, then :func:`_c_forward`; ``running``
    (:meth:`~bntt_snntorch.BatchNormTT.packed_running_statistics`, or None) updated in that pass."""
    from . import c_bntt

    params, codes, surrogate = _neuron_arguments(tensors, spec)
    w = None if weight is None else weight.detach().float().contiguous()
    running = None if running is None else c_bntt.RunningStatistics(*running)
    spikes, _, mean, var, rstd, k, shift = c_bntt.forward_with_statistics(
        x_seq.contiguous(),
        w,
        spec.eps,
        spec.scale,
        None,
        params,
        Build(codes, surrogate, True),
        last=False,
        running=running,
    )
    return spikes, mean, var, LoopArguments(k, shift, rstd, params, codes, surrogate)


def _c_backward(grad_spk, x_seq, mean, args: LoopArguments, training: bool, mem0=None, through_time: bool = True):
    """``(grad_x, sum_xhat (T, C), dL/dbeta (of the clamped beta), dL/dtheta)`` from the C loops, for the forward
    with ``args`` from ``mem0`` (None: zeros); ``through_time=False``: each step's gradient through its own
    input only (the online rules)."""
    from . import c_bntt

    m0 = None if mem0 is None else mem0.contiguous()
    grad_x, sum_dy_xhat, _, d_beta, d_theta = c_bntt.backward(
        grad_spk,
        x_seq.contiguous(),
        args.k,
        args.shift,
        mean.contiguous(),
        args.rstd,
        m0,
        args.params,
        Build(args.codes, args.surrogate, training, through_time),
    )
    return grad_x, sum_dy_xhat, d_beta, d_theta


def c_node_forward(ctx, x_seq, weight, mean, var, tensors: NeuronTensors, spec: BNTTSpec, running=None):
    """The C loops' forward of a node: ``(spikes, saved)``, or in training with ``mean`` None (the statistics
    computed in the loops' own pass, and ``running`` statistics updated there where given)
    ``((spikes, mean, var), saved)``, the statistics marked non-differentiable;
    ``saved``: what :func:`c_node_backward` takes (the caller saves it), the loops' static arguments set on ``ctx``."""
    ctx.beta_shape, ctx.theta_shape = tensors.beta.shape, tensors.theta.shape
    if mean is None:
        spikes, mean, var, args = _c_forward_with_statistics(x_seq, weight, tensors, spec, running)
        ctx.mark_non_differentiable(mean, var)
        out = spikes, mean, var
    else:
        args = loop_arguments(weight, mean, var, tensors, spec)  # once: the backward takes the same
        out = _c_forward(x_seq, args, spec.training, last=False)[0]
    ctx.codes, ctx.surrogate = args.codes, args.surrogate
    return out, (x_seq, mean, args.k, args.shift, args.rstd, args.params)


class BNTTLeakyScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, weight, mean, var, beta, theta, g, spec: BNTTSpec, layer=None, running=None):
        tensors = NeuronTensors(beta, theta, g)
        ctx.spec, ctx.layer = spec, layer
        if spec.path == "bntt-c":  # built in the forward: a build failure propagates and falls back the same way
            out, saved = c_node_forward(ctx, x_seq, weight, mean, var, tensors, spec, running)
            ctx.save_for_backward(*saved)
            return out
        ctx.save_for_backward(x_seq, weight, mean, var, beta, theta, g)
        if spec.path == "bntt-compiled":  # a compile failure propagates: the caller's kernels.attempt falls back
            return _compiled_forward(x_seq, weight, mean, var, tensors, spec)[0]
        return _eager_forward(x_seq, weight, mean, var, tensors, spec, "spk")

    @staticmethod
    def backward(ctx, grad_spk, *_statistics):  # the statistics' outputs (bntt-c in training) have no gradient
        spec: BNTTSpec = ctx.spec
        if spec.path == "bntt-c":
            return BNTTLeakyScan._c_backward(ctx, grad_spk)
        x_seq, weight, mean, var, beta, theta, g = ctx.saved_tensors
        tensors = NeuronTensors(beta, theta, g)
        need_weight = weight is not None and ctx.needs_input_grad[1]
        if spec.path == "bntt-compiled":
            try:
                grad_x, sum_xhat, grad_beta, grad_theta = _compiled_backward(
                    spec, grad_spk, x_seq, weight, mean, var, tensors
                )
                grad_weight = sum_xhat * spec.scale if need_weight else None
                return grad_x, grad_weight, None, None, grad_beta, grad_theta, None, None, None, None
            except fallback_errors() as err:  # the backward compiles on first use; the eager steps compute the same
                record_failure("bntt-compiled", err, ctx.layer)
        grad_x, grad_weight, grad_beta, grad_theta = _eager_backward(
            ctx, grad_spk, x_seq, weight, mean, var, tensors, need_weight
        )
        return grad_x, grad_weight, None, None, grad_beta, grad_theta, None, None, None, None

    @staticmethod
    def _c_backward(ctx, grad_spk):
        """The C loops' backward with the forward's loop arguments (:func:`c_node_backward`)."""
        need = ctx.needs_input_grad
        grad_x, grad_weight, grad_beta, grad_theta = c_node_backward(ctx, grad_spk, ctx.saved_tensors, need[1], need[4],
                                                                     need[5])  # fmt: skip
        return grad_x, grad_weight, None, None, grad_beta, grad_theta, None, None, None, None


def c_node_backward(ctx, grad_spk, saved, need_weight: bool, need_beta: bool, need_theta: bool):
    """``(grad_x, grad_weight (T, C), grad_beta, grad_theta)`` of a training or eval forward on the C loops, from
    its ``saved`` ``(x_seq, mean, k, shift, rstd, params)`` and ``ctx``'s ``spec``, ``codes``, ``surrogate``,
    ``beta_shape``, ``theta_shape``; the leak's and threshold's gradients only where asked (a fixed leak, the
    usual case, costs nothing), each None where not asked."""
    x_seq, mean, k, shift, rstd, params = saved
    spec: BNTTSpec = ctx.spec
    args = LoopArguments(k, shift, rstd, params, ctx.codes, ctx.surrogate)
    grad_x, sum_xhat, d_beta, d_theta = _c_backward(grad_spk, x_seq, mean, args, spec.training)
    grad_weight = sum_xhat * spec.scale if need_weight else None
    grad_beta = (d_beta * D.leak_gradient_mask(params[0])).reshape(ctx.beta_shape) if need_beta else None
    grad_theta = d_theta.reshape(ctx.theta_shape) if need_theta else None
    return grad_x, grad_weight, grad_beta, grad_theta


@torch.compiler.disable  # one opaque call under torch.compile, as the plain scans
def bntt_leaky_scan_cpu(x_seq: torch.Tensor, norm: BNTTNorm, p, path: str, layer=None) -> torch.Tensor:
    """Spikes ``(T, B, C, ...)`` of a leaky layer driven by ``norm.scale * BNTT(x_seq)``, from zero
    membrane, on the CPU paths ("bntt-eager", "bntt-compiled" or "bntt-c"); ``p``: the neuron's LeakyParams;
    ``layer``: the module (or its name), named if the compiled backward falls back (the name is made then)."""
    state = torch.promote_types(x_seq.dtype, torch.float32)
    tensors, spec = node_parts(norm, p, path, x_seq.device, state)
    mean, var = norm.mean.to(state), norm.var.to(state)
    return BNTTLeakyScan.apply(x_seq, norm.weight, mean, var, tensors.beta, tensors.theta, tensors.g, spec, layer)


@torch.compiler.disable
def bntt_leaky_scan_c_training(x_seq: torch.Tensor, weight, eps: float, scale: float, p, layer=None, running=None):
    """Training on the C path with the batch statistics computed in the loops' own pass (one read of each
    channel for the statistics, coefficients and neuron instead of three): ``(spikes (T, B, C, ...), mean,
    var)``, the batch's mean and biased variance ``(T, C)`` (for the running statistics where ``running``,
    :meth:`~bntt_snntorch.BatchNormTT.packed_running_statistics`, is None; else those are updated in the pass);
    the spikes and their gradients equal :func:`bntt_leaky_scan_cpu`'s on "bntt-c" with those statistics
    (``x_seq`` float32)."""
    norm = BNTTNorm(weight, None, None, eps, scale, True)
    tensors, spec = node_parts(norm, p, "bntt-c", x_seq.device, torch.float32)
    return BNTTLeakyScan.apply(x_seq, weight, None, None, tensors.beta, tensors.theta, tensors.g, spec, layer,
                               running)  # fmt: skip
