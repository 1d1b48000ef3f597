"""Training's whole ``synapse -> BNTT -> leaky`` block on the C path as one autograd node.

The block's synapse output is computed first without a graph (:func:`~.spike_synapse.synapse_value`; the
plan needs its shape and dtype); this node then runs the C loops' one-pass forward (statistics,
coefficients, neuron: :func:`~.bntt_scan.c_node_forward`) and in backward their backward followed by the
synapse's (:func:`~.spike_synapse.synapse_backward`). One node where the chain of a synapse node, a stack
of the gammas and the fused BNTT node took three: the same operations on the same values (tested bit for
bit against that chain), less Python a step. Saved: the synapse's input as :func:`~.spike_synapse.kept_input`
keeps it (int8 codes for spikes), its output and the ``(T, C)`` statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from . import spike_synapse
from .bntt_scan import BNTTNorm, c_node_backward, c_node_forward, node_parts
from .torch_scan import NeuronTensors


class _SynapseBNTTLeakyC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, cur, quantum, conv, spec, running, beta, theta, g, *gammas):
        gamma = torch.stack(gammas) if gammas else None
        tensors = NeuronTensors(beta, theta, g)
        (spikes, mean, var), saved = c_node_forward(ctx, cur, gamma, None, None, tensors, spec, running)
        kept = spike_synapse.kept_input(x, quantum, cur.dtype) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(kept, weight, *saved)
        ctx.spec, ctx.quantum, ctx.conv, ctx.x_dtype, ctx.shape = spec, quantum, conv, x.dtype, x.shape
        return spikes, mean, var

    @staticmethod
    def backward(ctx, grad_spk, *_statistics):  # the statistics have no gradient
        kept, weight, *saved = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_cur, grad_gamma, grad_beta, grad_theta = c_node_backward(
            ctx, grad_spk, saved, any(need[10:]), need[7], need[8]
        )
        x = None if kept is None else spike_synapse.input_for_weight(kept, ctx.quantum, grad_cur.dtype)
        grad_x, grad_w = spike_synapse.synapse_backward(ctx, grad_cur.flatten(0, 1), x, weight)
        gammas = grad_gamma.unbind(0) if grad_gamma is not None else (None,) * (len(need) - 10)
        return grad_x, grad_w, None, None, None, None, None, grad_beta, grad_theta, None, *gammas


@torch.compiler.disable  # one opaque call under torch.compile, as the fused nodes
def synapse_bntt_leaky_c(
    synapse: nn.Module,
    x: torch.Tensor,
    cur: torch.Tensor,
    gammas: tuple,
    eps: float,
    scale: float,
    p,
    quantum,
    running=None,
):
    """Training's block on the C loops as one node: ``(spikes (T, B, C, ...), mean, var)``, the batch's mean and
    biased variance ``(T, C)`` for the running statistics. ``x`` ``(T*B, ...)``: the block's input, its steps
    flattened into the batch; ``cur``: the synapse's output on it (float32 ``(T, B, C, ...)``,
    :func:`~.spike_synapse.synapse_value`, no graph); ``gammas``: the steps' BNTT weights (``()`` for
    ``affine=False``); ``p``: the neuron's LeakyParams; ``quantum``: the input is integer multiples of it
    (kept as int8 codes) or None; ``running``: as :func:`~.bntt_scan.bntt_leaky_scan_c_training`'s. Values and
    gradients equal :func:`~.spike_synapse.with_gradient` followed by that function with the stacked gammas."""
    tensors, spec = node_parts(BNTTNorm(None, None, None, eps, scale, True), p, "bntt-c", cur.device, torch.float32)
    quantum = None if quantum is None else float(quantum)
    conv = spike_synapse.conv_args(synapse)
    return _SynapseBNTTLeakyC.apply(x, synapse.weight, cur.contiguous(), quantum, conv, spec, running, tensors.beta,
                                    tensors.theta, tensors.g, *gammas)  # fmt: skip
