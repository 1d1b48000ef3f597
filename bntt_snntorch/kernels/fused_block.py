"""The ``synapse -> BNTT -> leaky`` block as one autograd node, on any backend of the table (:mod:`.backends`).

For a BNTT layer followed by a leaky neuron the unfused graph keeps the synapse output (for batch norm's
backward), the normalised current and the neuron's ``h`` and membrane, each full size. This node keeps the
synapse's output and the per-(step, channel) statistics and coefficients only; its backward recomputes the
currents and membranes from them, walks the reverse scan and turns ``dL/dcurrent`` into batch norm's input and
gamma gradients::

    current_t = s * gamma_t * (x_t - mean_t) / sqrt(var_t + eps)     (per channel; s: the block's input scale)

Where the synapse is a plain convolution or linear layer (:func:`~.spike_synapse.supports`), it is inside the
node too: its output is computed first without a graph (:func:`~.spike_synapse.synapse_value`; the plan needs its
shape), and the node's backward ends with the synapse's, its input kept as :func:`~.spike_synapse.kept_input`
keeps it (int8 codes for spikes). One node where the chain of a synapse node, the gammas' stack and the fused
node took three: the same operations on the same values, less Python a step.

In training the node computes the batch statistics itself (the backend's; in one pass with the forward where
the backend can) and returns them; the running statistics move as batch norm moves them, in the backend's pass
or after it (:meth:`~bntt_snntorch.BatchNormTT.record_statistics`). The online rules run the same node from a
given membrane without the gradient through time (``through_time=False``), returning the last membrane.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
from torch import nn

from .. import definition as D
from ..accumulated_norm import _TemporalAccumulatedBatchNorm
from . import spike_synapse
from .backends import BLOCK_BACKENDS, Backend, BlockSpec, Coefficients, neuron_gradients
from .fused_tab import fused_tab
from .overwrite import overwritable
from .torch_scan import NeuronSpec, NeuronTensors


class _Call(NamedTuple):
    """The static part of one node's call: the backend and the block's spec, the synapse's convolution arguments
    (None: linear), input quantum, input shape and dtype (where the synapse is inside), whether the last membrane
    is returned, and the packed running statistics the backend updates in its pass (or None)."""

    backend: Backend
    spec: BlockSpec
    conv: dict | None
    quantum: float | None
    x_shape: torch.Size | None
    x_dtype: torch.dtype | None
    last: bool
    running: tuple | None
    recompute: bool = False
    packing: spike_synapse.Packing | None = None  # memory "low": the kept input's bit planes


class FusedBNTTLeaky(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cur, x, synapse_weight, mean, var, mem0, beta, theta, g, call: _Call, *gammas):
        neuron = NeuronTensors(beta, theta, g)
        weight = torch.stack(gammas) if gammas else None
        backend, spec = call.backend, call.spec
        if mean is None:  # training: the batch's statistics, computed here
            spikes, last, mean, var, coefficients = backend.forward_with_statistics(
                cur, weight, mem0, neuron, spec, call.last, call.running
            )
            statistics = mean, var
        else:
            coefficients = Coefficients.of(weight, mean, var, spec)
            spikes, last = backend.forward(cur, coefficients, mem0, neuron, spec, call.last)
            statistics = None, None
        keep = ctx.needs_input_grad[2] or call.recompute
        kept = spike_synapse.kept_input(x, call.quantum, cur.dtype, call.packing) if keep else None
        ctx.save_for_backward(None if call.recompute else cur, mean, *coefficients, mem0, beta, theta, g, kept,
                              synapse_weight)  # fmt: skip
        ctx.call, ctx.cur_shape = call, cur.shape
        outputs = spikes, last, *statistics
        ctx.mark_non_differentiable(*(o for o in outputs[1:] if o is not None))
        return outputs

    @staticmethod
    def backward(ctx, grad_spk, *_):  # the membrane and the statistics have no gradient
        cur, mean, k, shift, rstd, mem0, beta, theta, g, kept, synapse_weight = ctx.saved_tensors
        call, need = ctx.call, ctx.needs_input_grad
        if cur is None:  # memory "low": the synapse's output again, the forward's call on the kept input
            cur = spike_synapse.recompute(kept, call.quantum, synapse_weight, call.conv, k.dtype, call.packing)
            cur = cur.view(ctx.cur_shape)
            kept = kept if need[2] else None
        out = grad_spk if overwritable(grad_spk, cur, sys.getrefcount(grad_spk)) else None
        grad_cur, sum_dy_xhat, d_beta, d_theta, _ = call.backend.backward(
            grad_spk, cur, Coefficients(k, shift, rstd), mean, mem0, NeuronTensors(beta, theta, g), call.spec,
            (need[6], need[7]), out,
        )  # fmt: skip
        grad_beta, grad_theta = neuron_gradients(d_beta, d_theta, beta, theta, (need[6], need[7]))
        gammas = (sum_dy_xhat * call.spec.scale).unbind(0) if any(need[10:]) else (None,) * (len(need) - 10)
        grad_cur, grad_x, grad_w = spike_synapse.inside_backward(grad_cur, kept, synapse_weight, call, need[1])
        return grad_cur, grad_x, grad_w, None, None, None, grad_beta, grad_theta, None, None, *gammas


def fused_block(path: str, cur: torch.Tensor, norm, p, scale: float = 1.0, *, synapse: nn.Module | None = None,
                x: torch.Tensor | None = None, quantum: float | None = None, mem0: torch.Tensor | None = None,
                first_step: int = 0, through_time: bool = True, last: bool = False,
                recompute: bool = False, codes: tuple[int, int] | None = None):  # fmt: skip
    """Spikes ``(T, B, C, ...)`` of a leaky layer (LeakyParams ``p``) driven by ``scale * BNTT(cur)`` (``norm`` a
    :class:`~bntt_snntorch.BatchNormTT` run as steps ``first_step ..``) from membrane ``mem0`` (None: zeros), on the
    backend of ``path``; and the last membrane (no gradient; None unless ``last``). In training the batch
    statistics are computed and the running statistics updated (once). ``synapse`` (a layer
    :func:`~.spike_synapse.supports`): ``cur`` is its output on ``x`` ``(T*B, ...)`` computed without a graph, and
    the node attaches its gradient (``x`` kept as int8 codes where ``quantum`` says it is spikes); else ``cur``'s
    own graph is followed. ``through_time=False``: each step's gradient through its own input only (the online
    rules). ``recompute`` (memory "low", the synapse inside): the node keeps the synapse's input only (as bit planes
    where ``codes``, the range of its int8 codes, is known) and computes its output again in backward. Errors
    propagate: the caller applies the fallback rule (:func:`~.fallback.attempt`). A TAB ``norm`` runs as
    :func:`~.fused_tab.fused_tab` (from step 0, through time: the plan sees to it)."""
    if isinstance(norm, _TemporalAccumulatedBatchNorm):
        if first_step or not through_time:
            raise ValueError("the fused TAB node runs a sequence from step 0 through time (the plan runs TAB's own "
                             "multi_step for the online rules' later calls)")  # fmt: skip
        return fused_tab(path, cur, norm, p, scale, synapse=synapse, x=x, quantum=quantum, mem0=mem0, last=last)
    backend = BLOCK_BACKENDS[path]
    state = torch.promote_types(cur.dtype, torch.float32)
    spec = BlockSpec(NeuronSpec.of(p), norm[first_step].eps, float(scale), norm.training, through_time)
    neuron = NeuronTensors.of(p, cur.device, state)
    gammas = norm.step_gammas(cur, first_step)
    mean = var = running = None
    if not norm.training:
        mean, var = norm.running_statistics(first_step, cur.shape[0], state)
    elif backend.updates_running_statistics and not torch.compiler.is_compiling():
        running = norm.packed_running_statistics(cur, first_step)
    if torch.compiler.is_compiling():  # one torch.library op, the synapse traced apart
        weight = torch.stack(gammas) if gammas else None
        spikes, mem, batch_mean, batch_var = _traced_block(path, cur, weight, mean, var, mem0, neuron, spec, last)
    else:
        spikes, mem, batch_mean, batch_var = _node(backend, spec, cur, norm, neuron, gammas, mean, var, running,
                                                   synapse, x, quantum, mem0, last, recompute, codes)  # fmt: skip
    if norm.training and running is None:  # not moved in the backend's pass
        norm.record_statistics(cur, batch_mean, batch_var, first_step)
    return spikes, mem


def _node(backend, spec, cur, norm, neuron, gammas, mean, var, running, synapse, x, quantum, mem0, last,
          recompute=False, codes=None):  # fmt: skip
    """:class:`FusedBNTTLeaky` applied: ``(spikes, mem, batch mean, batch var)``."""
    inside = synapse is not None
    recompute = recompute and inside
    bits = recompute and quantum is not None
    packing = spike_synapse.packing_for(codes, x.shape[1:]) if bits else None
    call = _Call(backend, spec, spike_synapse.conv_args(synapse) if inside else None,
                 None if quantum is None else float(quantum), x.shape if inside else None, x.dtype if inside else None,
                 last, running, recompute, packing)  # fmt: skip
    return FusedBNTTLeaky.apply(
        cur.detach() if inside else cur, x if inside else None, synapse.weight if inside else None, mean, var, mem0,
        neuron.beta, neuron.theta, neuron.g, call, *gammas,
    )  # fmt: skip


# -- under torch.compile: the same node as one torch.library op, so that the block is no graph break ----------
@torch.library.custom_op("bntt_snntorch::fused_bntt_leaky", mutates_args=())
def fused_bntt_leaky(
    cur: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor | None,
    var: torch.Tensor | None,
    mem0: torch.Tensor | None,
    beta: torch.Tensor,
    theta: torch.Tensor,
    g: torch.Tensor,
    path: str,
    codes: list[int],
    surrogate: list[float],
    unit_spikes: bool,
    eps: float,
    scale: float,
    training: bool,
    through_time: bool,
    last: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:class:`FusedBNTTLeaky`'s forward without the synapse as one op: ``(spikes, last membrane (empty unless
    last), mean, var, k, shift, rstd)``, the statistics the batch's in training (``mean`` None), else copies of
    the given ones. ``weight``: the stacked gammas ``(T, C)`` or None; the spec as :meth:`BlockSpec.constants`."""
    backend = BLOCK_BACKENDS[path]
    spec = BlockSpec.of_constants(codes, surrogate, unit_spikes, eps, scale, training, through_time)
    neuron = NeuronTensors(beta, theta, g)
    if mean is None:
        spikes, mem, mean, var, coefficients = backend.forward_with_statistics(cur, weight, mem0, neuron, spec, last)
    else:
        coefficients = Coefficients.of(weight, mean, var, spec)
        spikes, mem = backend.forward(cur, coefficients, mem0, neuron, spec, last)
        mean, var = mean.clone(), var.clone()
    mem = mem if mem is not None else mean.new_empty(0)
    return spikes, mem, mean, var, *(c.clone() for c in coefficients)


@fused_bntt_leaky.register_fake
def _(cur, weight, mean, var, mem0, beta, theta, g, path, codes, surrogate, unit_spikes, eps, scale, training,
      through_time, last):  # fmt: skip
    state = torch.promote_types(cur.dtype, torch.float32)
    table = cur.new_empty(cur.shape[0], cur.shape[2], dtype=state)
    mem = cur.new_empty(cur.shape[1:] if last else (0,), dtype=state)
    return torch.empty_like(cur), mem, *(torch.empty_like(table) for _ in range(5))


@torch.library.custom_op("bntt_snntorch::fused_bntt_leaky_backward", mutates_args=())
def fused_bntt_leaky_backward(
    grad_spk: torch.Tensor,
    cur: torch.Tensor,
    mean: torch.Tensor,
    k: torch.Tensor,
    shift: torch.Tensor,
    rstd: torch.Tensor,
    mem0: torch.Tensor | None,
    beta: torch.Tensor,
    theta: torch.Tensor,
    g: torch.Tensor,
    path: str,
    codes: list[int],
    surrogate: list[float],
    unit_spikes: bool,
    eps: float,
    scale: float,
    training: bool,
    through_time: bool,
    need_beta: bool,
    need_theta: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dL/dcur, dL/dgammas (T, C), dL/dbeta, dL/dtheta)`` of :func:`fused_bntt_leaky` (the leak's and the
    threshold's zeros where not needed)."""
    spec = BlockSpec.of_constants(codes, surrogate, unit_spikes, eps, scale, training, through_time)
    neuron = NeuronTensors(beta, theta, g)
    grad_cur, sum_dy_xhat, d_beta, d_theta, _ = BLOCK_BACKENDS[path].backward(
        grad_spk, cur, Coefficients(k, shift, rstd), mean, mem0, neuron, spec, (need_beta, need_theta)
    )
    grad_beta = (d_beta * D.leak_gradient_mask(beta)).reshape(beta.shape) if need_beta else torch.zeros_like(beta)
    grad_theta = d_theta.reshape(theta.shape).clone() if need_theta else torch.zeros_like(theta)
    return grad_cur, sum_dy_xhat * scale, grad_beta, grad_theta


@fused_bntt_leaky_backward.register_fake
def _(grad_spk, cur, mean, k, shift, rstd, mem0, beta, theta, g, *static):
    return torch.empty_like(cur), torch.empty_like(k), torch.empty_like(beta), torch.empty_like(theta)


def _setup_context(ctx, inputs, output):
    cur, weight, _, _, mem0, beta, theta, g, path, *static = inputs
    _, _, mean, _, k, shift, rstd = output
    ctx.save_for_backward(cur, mean, k, shift, rstd, mem0, beta, theta, g)
    ctx.path, ctx.static = path, tuple(static[:-1])  # the spec's constants (not ``last``)


def _backward(ctx, grad_spk, *_):
    need = ctx.needs_input_grad
    grad_cur, grad_weight, grad_beta, grad_theta = fused_bntt_leaky_backward(
        grad_spk, *ctx.saved_tensors, ctx.path, *ctx.static, need[5], need[6]
    )
    return grad_cur, grad_weight, None, None, None, grad_beta, grad_theta, *([None] * 10)


fused_bntt_leaky.register_autograd(_backward, setup_context=_setup_context)


def _traced_block(path: str, cur, weight, mean, var, mem0, neuron: NeuronTensors, spec: BlockSpec, last: bool):
    """The node as :func:`fused_bntt_leaky` (torch.compile traces it as one op): ``(spikes, mem, mean, var)``."""
    spikes, mem, mean, var, *_ = fused_bntt_leaky(cur, weight, mean, var, mem0, neuron.beta, neuron.theta, neuron.g,
                                                  path, *spec.constants(), last)  # fmt: skip
    return spikes, mem if last else None, mean, var
