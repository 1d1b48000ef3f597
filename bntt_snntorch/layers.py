"""Spiking building blocks that run per step or multi-step with one state dict.

Every block is a step module (:mod:`bntt_snntorch.step_mode`):

* ``step_mode="m"`` (the default here): ``block(x_seq)`` takes ``(T, B, ...)`` and returns
  ``(T, B, ...)``; synapses (conv / linear) and pooling run once on the ``(T*B, ...)`` batch,
  the normalisation in one call, the neuron as a scan over T (``block.multi_step(x_seq)``).
* ``step_mode="s"``: ``block(x)`` takes one step ``(B, ...)`` and keeps its state (membrane,
  step counter) until ``block.reset()`` / :func:`bntt_snntorch.utils.reset`.
* ``block.step(x, t, state)`` — one step ``(B, ...)`` with explicit state, snnTorch style;
  returns ``(y, state)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from . import definition
from .bntt import BatchNormTT
from .kernels import attempt, choose_plan, fused_block, record_taken, report, spike_synapse
from .kernels.local_scan import local_leaky_scan
from .kernels.plan import fusable
from .kernels.pooling import avg_pool2d
from .step_mode import StepCounter, StepModule


def _over_time(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Apply a stateless ``module`` to every step of ``x_seq`` ``(T, B, ...)`` as one ``(T*B, ...)`` batch."""
    y = module(x_seq.flatten(0, 1))
    return y.unflatten(0, x_seq.shape[:2])


class TimeDistributed(StepModule, nn.Module):
    """A stateless layer (pooling, flatten, dropout) applied to each step independently.

    Step mode "m" (default): ``(T, B, ...)`` in and out, as one ``(T*B, ...)`` batch; "s": one step.
    """

    default_step_mode = "m"

    def __init__(self, module: nn.Module, *, step_mode: str | None = None):
        super().__init__()
        self.module = module
        if step_mode is not None:
            self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi_step(x) if self.step_mode == "m" else self._module(x)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, ...)`` -> ``(T, B, ...)``."""
        return _over_time(self._module, x_seq)

    def step(self, x: torch.Tensor, t: int, state=None):
        """One step ``(B, ...)`` -> ``(y, state)`` (no state: passed through)."""
        return self._module(x), state

    def _module(self, x: torch.Tensor) -> torch.Tensor:
        """The module on a batch ``x``; a plain AvgPool2d on ``(N, C, H, W)`` as :func:`~.kernels.pooling.avg_pool2d`
        (the same values and gradients, nothing saved for backward, C loops on the CPU)."""
        if type(self.module) is nn.AvgPool2d and x.dim() == 4:
            return avg_pool2d(x, self.module, self)
        return self.module(x)


class BlockState(NamedTuple):
    """A block's state between single steps: the neuron's membrane ``(B, ...)`` and, in OTTT online
    training, the presynaptic trace of the block's input (None otherwise)."""

    mem: torch.Tensor | None
    trace: torch.Tensor | None = None


class _ReplaceForGrad(torch.autograd.Function):
    """``value`` forward; backward, the gradient goes to ``grad_path`` (OTTT's replacement of the spikes
    by their trace in the weight gradient)."""

    @staticmethod
    def forward(ctx, grad_path, value):
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


ONLINE_RULES = ("sltt", "ottt")


class SpikingBlock(StepCounter, nn.Module):
    """``synapse -> norm -> neuron``: e.g. Conv2d (no bias) -> BNTT -> leaky neuron.

    Args:
        synapse: a stateless layer (``nn.Conv2d``, ``nn.Linear``).
        norm: a :class:`~bntt_snntorch.BatchNormTT2d`/``1d`` (or any
            :class:`~bntt_snntorch.ThroughTime`), or ``None`` for no normalisation.
        neuron: a neuron layer (:class:`~bntt_snntorch.Leaky`, or any layer with
            :class:`~bntt_snntorch.neurons.StepNeuron`'s ``step`` / ``multi_step`` /
            ``kernel_params``); its step mode does not matter: the block calls ``multi_step`` /
            ``step`` explicitly.
        input_scale: the synaptic current is multiplied by it before
            integration (``1 - lambda`` in the rate-vs-direct models), default 1.
        input_quantum: the block's input is integer multiples of it (spikes: the previous
            neuron's graded factor; after 2x2 average pooling a quarter of that). Set, a plain
            conv / linear synapse keeps its input as int8 codes for backward. Models do not set
            it: :func:`mark_spike_inputs` derives it from the network's structure. ``None``: the
            input is kept as it is.
        step_mode: "m" (default) or "s" (see the module docstring).

    The block's state is the neuron's membrane ``(B, ...)`` (a :class:`BlockState`).

    ``online_rule`` (None, "sltt" or "ottt"; set by online training) changes what :meth:`step`
    differentiates: no gradient through the membrane from the previous step (both), and with
    "ottt" the synapse's weight gradient taken with the presynaptic trace of its input
    (``trace_t = beta_pre * trace_(t-1) + x_t``, ``beta_pre`` the leak of the neuron that made the
    input) instead of the input itself. The values computed are the same either way.
    """

    default_step_mode = "m"
    #: "default" or "low" (:func:`bntt_snntorch.set_memory`): what the fused node keeps for backward.
    memory = "default"
    #: ``(lo, hi)``: the range of the input's int8 codes where :func:`mark_spike_inputs` knows it (memory "low"
    #: keeps them as ``ceil(log2(hi - lo + 1))`` bit planes), else None.
    input_codes: tuple[int, int] | None = None

    def __init__(
        self,
        synapse: nn.Module,
        norm: nn.Module | None,
        neuron: nn.Module,
        input_scale: float = 1.0,
        input_quantum: float | None = None,
        *,
        step_mode: str | None = None,
    ):
        super().__init__()
        self.synapse = synapse
        self.norm = norm
        self.neuron = neuron
        self.input_scale = input_scale
        self.input_quantum = input_quantum
        self.online_rule = None
        if step_mode is not None:
            self.step_mode = step_mode

    @property
    def presynaptic(self) -> nn.Module | None:
        """The neuron whose spikes (pooled or not) are this block's input, or None (set by
        :func:`mark_spike_inputs`; not a submodule, not in the state dict)."""
        return self.__dict__.get("_presynaptic")

    @property
    def time_steps(self) -> int | None:
        """The norm's step count (the single-step counter wraps there), or None."""
        return getattr(self.norm, "time_steps", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Step mode "m": ``(T, B, ...)`` -> spikes ``(T, B, ...)``; "s": one step ``(B, ...)`` ->
        spikes ``(B, ...)``, the membrane kept until :meth:`reset`."""
        if self.step_mode == "m":
            return self.multi_step(x)
        spk, mem = self.step(x, self._next_step(x), self.__dict__.get("_mem"))
        self.__dict__["_mem"] = mem
        self._advance(x)
        return spk

    def reset_state(self) -> None:
        """Forget the single-step state: membrane and step counter."""
        super().reset_state()
        self.__dict__.pop("_mem", None)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``(T, B, ...)`` spikes in -> ``(T, B, ...)`` spikes out, from a zero membrane.

        Reads top to bottom: the synapse's output, the plan (:func:`~bntt_snntorch.kernels.choose_plan`), then
        either the fused node on the plan's backend (BNTT and a fusable neuron, the usual case: one node that keeps
        only the synapse output for backward, the synapse inside it where it is a plain conv / linear layer;
        :func:`~bntt_snntorch.kernels.fused_block`) or the norm's and the neuron's own multi-step calls.
        """
        params = self.neuron.kernel_params()
        inside = spike_synapse.supports(self.synapse) and not torch.compiler.is_compiling()
        if inside:  # the synapse's value first, its gradient attached by the fused node or below
            x = x_seq.flatten(0, 1)
            cur = spike_synapse.synapse_value(self.synapse, x).unflatten(0, x_seq.shape[:2])
            grad = torch.is_grad_enabled() and (x.requires_grad or self.synapse.weight.requires_grad)
        else:  # under torch.compile value and gradient in one traced call
            x, cur, grad = None, self._synapse_over_time(x_seq), None
        plan = report(self, self._plan(cur, params, grad, 0, inside))
        if plan.fused:
            run = lambda path: fused_block(
                path,
                cur,
                self.norm,
                params,
                self.input_scale,  # noqa: E731
                synapse=self.synapse if inside else None,
                x=x,
                quantum=self.input_quantum,
                recompute=plan.recompute,
                codes=self.input_codes,
            )
            (spikes, _), path = attempt(self, plan.path, run)
            record_taken(self, path)
            return spikes
        if inside and grad:
            value = cur.flatten(0, 1)
            cur = spike_synapse.with_gradient(self.synapse, x, value, self.input_quantum).unflatten(0, x_seq.shape[:2])
        return self._norm_and_neuron(cur)

    def _plan(self, cur: torch.Tensor, params, grad: bool | None = None, first_step: int = 0, inside: bool = False):
        """The block's plan for the synapse output ``cur`` (:func:`~bntt_snntorch.kernels.choose_plan`) of steps
        ``first_step ..``; ``inside``: the synapse runs inside the fused node."""
        return choose_plan(cur, params, getattr(self.neuron, "backend", "auto"), block=True, norm=self.norm,
                           neuron=self.neuron, grad=grad, first_step=first_step, memory=self.memory,
                           synapse_inside=inside)  # fmt: skip

    def _norm_and_neuron(self, cur: torch.Tensor) -> torch.Tensor:
        """The unfused rest of the block on the synapse's output ``cur`` ``(T, B, ...)``: the norm's own
        multi_step, the input scale, the neuron's multi_step."""
        if self.norm is not None:
            cur = self.norm.multi_step(cur)
        if self.input_scale != 1.0:
            cur = cur * self.input_scale
        return self.neuron.multi_step(cur)[0]

    def _synapse_over_time(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The synapse on every step of ``x_seq`` ``(T, B, ...)`` as one ``(T*B, ...)`` batch (spike input
        kept as int8 codes for backward where :attr:`input_quantum` says it is spikes)."""
        if self.input_quantum is not None and torch.is_grad_enabled() and spike_synapse.supports(self.synapse):
            cur = spike_synapse.spike_synapse(self.synapse, x_seq.flatten(0, 1), self.input_quantum)
            return cur.unflatten(0, x_seq.shape[:2])
        return _over_time(self.synapse, x_seq)

    def _trace_synapse(self, x: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
        """OTTT's synapse on ``x`` ``(N, ...)``: its value, with the weight gradient taken with ``trace`` (the
        same shape) in place of ``x``; one synapse forward where :func:`spike_synapse.supports` it, else
        two (the value without a graph, the gradient through a forward on the trace)."""
        if spike_synapse.supports(self.synapse):
            return spike_synapse.trace_synapse(self.synapse, x, trace)
        with torch.no_grad():
            value = self.synapse(x)
        return _ReplaceForGrad.apply(self.synapse(_ReplaceForGrad.apply(x, trace)), value)

    def local_steps_supported(self) -> bool:
        """Whether :meth:`local_steps` runs this block: a leaky neuron the kernels run, with a fixed
        scalar leak and threshold, after a per-step norm (or none)."""
        p = self.neuron.kernel_params()
        if p is None or fusable(p) is not None:
            return False
        fixed = all(
            torch.as_tensor(v).numel() == 1 and not torch.as_tensor(v).requires_grad for v in (p.beta, p.threshold)
        )
        return fixed and (self.norm is None or isinstance(self.norm, BatchNormTT))

    def local_steps(self, x_seq: torch.Tensor, first_step: int, state: BlockState | None = None):
        """Steps ``first_step .. first_step + K - 1`` of the sequence, ``x_seq`` ``(K, B, ...)``, from
        ``state`` (the membrane, and OTTT's presynaptic trace, the previous steps left; None: zeros)
        with the online rule's gradient: each step's spikes through that step's own input only (BNTT and
        the neuron as one node on the plan's backend, :func:`~bntt_snntorch.kernels.fused_block` without the
        gradient through time, or the neuron alone, :func:`~bntt_snntorch.kernels.local_scan.local_leaky_scan`),
        and with ``online_rule="ottt"`` the synapse's weight gradient taken with the trace of its input, as
        :meth:`step` does. The values are the exact ones. Returns ``(spk_seq (K, B, ...), state)``, the state
        without gradient. Online training runs K steps a call this way (:mod:`bntt_snntorch.training.online`)."""
        mem, trace = state or BlockState(None)
        if self.online_rule == "ottt" and self.presynaptic is not None:
            traces, trace = _traces(x_seq, trace, self.presynaptic.beta)
            cur = self._trace_synapse(x_seq.flatten(0, 1), traces.flatten(0, 1)).unflatten(0, x_seq.shape[:2])
        else:
            cur = self._synapse_over_time(x_seq)
        params = self.neuron.params()
        plan = report(self, self._plan(cur, params, None, first_step))
        if plan.fused:  # BNTT and the neuron as one node
            run = lambda path: fused_block(
                path,
                cur,
                self.norm,
                params,
                self.input_scale,
                mem0=mem,  # noqa: E731
                first_step=first_step,
                through_time=False,
                last=True,
            )
            (spikes, mem), path = attempt(self, plan.path, run)
            record_taken(self, path)
            return spikes, BlockState(mem, trace)
        if self.norm is not None:
            cur = self.norm.multi_step(cur, first_step)
        if self.input_scale != 1.0:
            cur = cur * self.input_scale
        spikes, mem = local_leaky_scan(cur, params, mem)
        return spikes, BlockState(mem, trace)

    def step(self, x: torch.Tensor, t: int, state: BlockState | torch.Tensor | None = None):
        """Step ``t``: ``(B, ...)`` in -> ``(spk, state)``; ``state``: the previous step's (None at the start)."""
        state = BlockState(state) if isinstance(state, torch.Tensor) else state or BlockState(None)
        mem, trace = state
        if self.online_rule is not None and mem is not None:
            mem = mem.detach()  # online training: no gradient through time
        if self.online_rule == "ottt" and self.presynaptic is not None:
            _, trace = _traces(x.unsqueeze(0), trace, self.presynaptic.beta)
            cur = self._trace_synapse(x, trace)
        else:
            cur = self.synapse(x)
        if self.norm is not None:
            cur = self.norm.step(cur, t)
        if self.input_scale != 1.0:
            cur = cur * self.input_scale
        spk, mem = self.neuron.step(cur, mem)
        return spk, BlockState(mem, trace)

    def output_quantum(self) -> float | None:
        """The block's spikes are integer multiples of this (the neuron's fixed graded factor, a
        power of two so that pooled spikes stay exact), or None."""
        params = self.neuron.kernel_params()
        if params is None:
            return None
        g = torch.as_tensor(params.graded_spikes_factor)
        if g.numel() != 1 or g.requires_grad:
            return None
        return spike_synapse.power_of_two(float(g))

    def extra_repr(self) -> str:
        parts = [] if self.input_scale == 1.0 else [f"input_scale={self.input_scale}"]
        parts += [] if self.input_quantum is None else [f"input_quantum={self.input_quantum}"]
        return ", ".join(parts + [f"step_mode={self.step_mode!r}"])


@torch.no_grad()
def _traces(x_seq: torch.Tensor, trace: torch.Tensor | None, beta) -> tuple[torch.Tensor, torch.Tensor]:
    """OTTT's presynaptic traces ``a_t = beta * a_(t-1) + x_t`` of ``x_seq`` ``(K, B, ...)`` from ``trace``
    (None: the first step's ``a_0 = x_0``) -> ``(traces (K, B, ...), the last one)``; ``beta`` clamped to
    [0, 1] as the neuron's leak is."""
    leak = definition.clamp_leak(torch.as_tensor(beta, device=x_seq.device))
    traces = torch.empty_like(x_seq)
    for t, x in enumerate(x_seq):
        trace = x.clone() if trace is None else leak * trace + x
        traces[t] = trace
    return traces, trace


def _pooled_quantum(module: nn.Module, quantum: float | None) -> float | None:
    """The quantum after a stateless layer: flatten keeps it, power-of-two average pooling divides it."""
    if quantum is None:
        return None
    if isinstance(module, (nn.Flatten, nn.Identity)):
        return quantum
    if type(module) is nn.AvgPool2d and not module.padding and not module.ceil_mode:
        kh, kw = (module.kernel_size, module.kernel_size) if isinstance(module.kernel_size, int) else module.kernel_size
        return spike_synapse.power_of_two(quantum / (kh * kw))
    return None


def mark_spike_inputs(layers: nn.Module, input_quantum: float | None = None) -> nn.Module:
    """Set ``input_quantum`` of every :class:`SpikingBlock` in the sequence ``layers`` (an
    ``nn.Sequential`` of blocks and :class:`TimeDistributed` layers) whose input is known to be
    spikes, so that its synapse keeps that input as int8 codes for backward; returns ``layers``.

    The first block's input is the encoded data: ``input_quantum`` says what it is (1.0 for the
    signed Poisson spikes of :func:`bntt_snntorch.encoding.poisson`; ``None``, the default, for
    analog or unknown input). Later blocks take the previous block's spikes (its neuron's fixed
    graded factor, a power of two), divided by the area of power-of-two average pooling;
    anything else on the way (adaptive pooling, dropout, a learnable spike factor) stops the
    chain. Memory only: values and gradients are the same either way (tested). The same walk
    records each block's presynaptic neuron (:attr:`SpikingBlock.presynaptic`, used by OTTT) and the range of its
    input's codes (:attr:`SpikingBlock.input_codes`: -1..1 for the encoded input, 0..1 after a neuron, times the
    area of each pooling).
    """
    quantum, presynaptic = spike_synapse.power_of_two(input_quantum), None
    codes = (-1, 1)  # the encoded input: signed spikes (unsigned ones fit too)
    for layer in layers:
        if isinstance(layer, SpikingBlock):
            layer.input_quantum = quantum if spike_synapse.supports(layer.synapse) else None
            layer.input_codes = codes if layer.input_quantum is not None else None
            layer.__dict__["_presynaptic"] = presynaptic
            quantum, presynaptic, codes = layer.output_quantum(), layer.neuron, (0, 1)
        elif isinstance(layer, TimeDistributed):
            pooled = _pooled_quantum(layer.module, quantum)
            area = 1 if pooled is None else round(quantum / pooled)
            quantum, codes = pooled, (codes[0] * area, codes[1] * area)
            presynaptic = presynaptic if _is_linear(layer.module) else None
        else:
            quantum = presynaptic = None
    return layers


def _is_linear(module: nn.Module) -> bool:
    """Pooling and flattening are linear: a presynaptic trace passes through them as the spikes do."""
    return isinstance(module, (nn.Flatten, nn.Identity, nn.AvgPool2d, nn.AdaptiveAvgPool2d))
