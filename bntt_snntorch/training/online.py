"""Online training: memory that does not grow with T (SLTT, Meng et al. ICCV 2023; OTTT, Xiao et al.
NeurIPS 2022), for the BNTT networks.

BPTT keeps every step's activations until one backward at the end. The online rules run the network
one step at a time (step mode "s"): at step ``t`` the forward, that step's loss
``CE(readout_t, y) / T`` and its backward, after which step ``t``'s graph is freed. Only the
gradient's spatial path is kept:

* **SLTT**: no gradient flows through the membrane from step t-1 to step t (it is detached); the
  weight gradient is the sum over steps of each step's spatial gradient. **SLTT-K** backpropagates
  only K of the T steps, chosen at random per batch (the other steps run forward only).
* **OTTT**: as SLTT, and the synapse's weight gradient is taken with the presynaptic trace
  ``a_t = beta_pre * a_(t-1) + s_t`` of its input instead of the input ``s_t`` (the paper's
  ``grad_W = sum_t g_t a_t^T``); the forward values are the exact ones. With BNTT between synapse and
  neuron, ``g_t`` is the gradient at the synapse's output after step t's normalisation: BNTT's
  backward at step t uses step t's batch statistics only, so the rule stays local in time.

**Several steps a call.** Without a temporal gradient, either rule's gradient at a step does not depend
on the steps after it, so where the network allows it (:func:`runs_in_chunks`: leaky neurons with a fixed
leak and threshold after BNTT, pooling between blocks) the steps run :data:`CHUNK_STEPS` at a time:
each block's synapse and BNTT over the chunk's steps at once, the neuron as one scan without a graph
from the membrane the previous chunk left, differentiated through each step's own input, and for OTTT
the traces of the chunk's input from the trace the previous chunk left
(:meth:`~bntt_snntorch.layers.SpikingBlock.local_steps`); then the chunk's summed loss and one
backward. The gradients equal the per-step path's (tested); the memory held is a chunk's, whatever T.

BNTT suits both: the statistics of step t need only step t's batch (each step's running statistics
are updated once, by that step's forward). Norms whose statistics span all steps (BN over time, tdBN,
TEBN) cannot run online: :class:`~bntt_snntorch.training.ConfigError` names the ones that can.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel

from ..layers import ONLINE_RULES, BlockState, SpikingBlock, TimeDistributed
from ..models import SpikingNet
from ..step_mode import set_step_mode

TRAINING_MODES = ("bptt", *ONLINE_RULES)
#: Steps each online rule runs a call where the network allows it: the memory held is that of this many
#: steps at every T, and the synapses see this many steps' batches at once. OTTT keeps each step's input
#: trace (float) for the weight gradient besides the synapse output, so it takes half SLTT's steps: the
#: held bytes of both stay under a quarter of BPTT's at T=25 (benchmarks/results/online-memory.md).
CHUNK_STEPS = {"sltt": 4, "ottt": 2}


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is in a lower precision (bf16 / fp16 autocast), else as it is (float64 stays)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _net(model: nn.Module) -> SpikingNet:
    net = getattr(model, "module", model)  # under DistributedDataParallel
    if not isinstance(net, SpikingNet):
        raise TypeError(f"online training needs a SpikingNet, got {type(net).__name__}")
    return net


@contextlib.contextmanager
def online(model: nn.Module, rule: str):
    """The network in step mode "s" with every block on the online ``rule``; restored on exit."""
    net = _net(model)
    blocks = [m for m in net.modules() if isinstance(m, SpikingBlock)]
    mode = net.step_mode
    set_step_mode(net, "s")
    for block in blocks:
        block.online_rule = rule
    try:
        yield net
    finally:
        for block in blocks:
            block.online_rule = None
        net.reset()
        set_step_mode(net, mode)


def online_backward(
    model: nn.Module,
    steps: torch.Tensor | Iterable[torch.Tensor],
    labels: torch.Tensor,
    rule: str,
    backprop_steps: int | None = None,
    autocast=contextlib.nullcontext,
    scale=lambda loss: loss,
    num_steps: int | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of online training up to the optimizer step: for each step ``t`` of ``steps`` (a
    sequence ``(T, B, ...)``, or T step tensors ``(B, ...)`` made one at a time, e.g.
    :func:`bntt_snntorch.encoding.encode_steps`, then ``num_steps`` = T), forward, the loss
    ``CE(readout_t, labels) / T`` (with ``label_smoothing``) and its backward (``scale``: a GradScaler's).
    ``backprop_steps`` = K backpropagates K random steps (SLTT-K; the others run forward only; drawn with
    Python's ``random``, whose state checkpoints keep). Under
    DistributedDataParallel the steps run on the wrapped module and the gradients are averaged over
    the ranks once, after the last backward (DDP's own hook would expect every parameter in that last
    backward, but BNTT's gamma of step t gets its gradient only at step t). Returns
    ``(loss, logits)``, detached: the summed per-step loss and the mean readout ``(B, classes)``.
    """
    T = len(steps) if num_steps is None else num_steps
    chosen = set(range(T))
    if backprop_steps is not None and backprop_steps < T:  # Python's generator: checkpoints keep its state
        chosen = set(random.sample(range(T), backprop_steps))
    with online(model, rule) as net:
        net.reset()
        if len(chosen) == T and runs_in_chunks(net, rule):
            loss_sum, readout_sum = _chunked_backward(
                net, steps, labels, T, CHUNK_STEPS[rule], autocast, scale, label_smoothing
            )
        else:
            loss_sum, readout_sum = _per_step_backward(net, steps, labels, T, chosen, autocast, scale, label_smoothing)
    if isinstance(model, DistributedDataParallel):
        average_gradients_over_ranks(net)
    return loss_sum, readout_sum / T


def _per_step_backward(
    net: SpikingNet, steps, labels: torch.Tensor, T: int, chosen: set, autocast, scale, label_smoothing: float
):
    """The online rule one step a call (step mode "s"): each step's forward, its loss
    ``CE(readout_t, labels) / T`` and, for the ``chosen`` steps, its backward. Returns the summed loss and
    the summed readout ``(B, classes)``, detached."""
    loss_sum, readout_sum = 0.0, 0.0
    for t, x_t in enumerate(steps):
        with contextlib.nullcontext() if t in chosen else torch.no_grad():
            with autocast():
                out = net(x_t)
                loss = F.cross_entropy(at_least_float32(out), labels, label_smoothing=label_smoothing) / T
            if t in chosen:
                scale(loss).backward()
        loss_sum = loss_sum + loss.detach()
        readout_sum = readout_sum + at_least_float32(out.detach())
    return loss_sum, readout_sum


def runs_in_chunks(net: SpikingNet, rule: str) -> bool:
    """Whether ``rule`` (SLTT or OTTT) on ``net`` runs several steps a call (:data:`CHUNK_STEPS`): every feature
    layer a block that supports :meth:`~bntt_snntorch.layers.SpikingBlock.local_steps` or a stateless
    :class:`~bntt_snntorch.layers.TimeDistributed` layer."""
    return rule in ONLINE_RULES and all(
        isinstance(layer, TimeDistributed) or (isinstance(layer, SpikingBlock) and layer.local_steps_supported())
        for layer in net.features
    )


def _chunked_backward(
    net: SpikingNet, steps, labels: torch.Tensor, T: int, chunk: int, autocast, scale, label_smoothing: float
):
    """The online rule ``chunk`` steps a call: the chunk forward (each block from the state the
    last chunk left), its summed loss ``sum_t CE(readout_t, labels) / T`` and one backward. Returns the
    summed loss and the summed readout ``(B, classes)``, detached."""
    states: dict[int, BlockState] = {}
    loss_sum, readout_sum, steps = 0.0, 0.0, iter(steps)
    for first in range(0, T, chunk):
        x = torch.stack(list(itertools.islice(steps, chunk)))
        with autocast():
            for i, layer in enumerate(net.features):
                if isinstance(layer, SpikingBlock):
                    x, states[i] = layer.local_steps(x, first, states.get(i))
                else:
                    x = layer.multi_step(x)
            out = at_least_float32(net.classifier(x))
            per_step = F.cross_entropy(
                out.flatten(0, 1), labels.repeat(len(out)), reduction="none", label_smoothing=label_smoothing
            )
            loss = per_step.view(len(out), -1).mean(1).sum() / T
        scale(loss).backward()
        loss_sum = loss_sum + loss.detach()
        readout_sum = readout_sum + out.detach().sum(0)
    return loss_sum, readout_sum


def average_gradients_over_ranks(module: nn.Module) -> None:
    """Average the gradients of ``module``'s parameters over the ranks in one all-reduce (what DDP does
    at a synchronised backward). Parameters without a gradient (a step SLTT-K skipped, the same steps on
    every rank) are left without one."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(averaged)
