"""Neuron layers and the neuron registry.

``Leaky``: ``snn.Leaky`` with an explicit step mode; ``MultiStepLeaky``: the same, multi-step by
default; ``StepNeuron``: the base of a new neuron (write its ``step``). The registry
(``@register_neuron``, ``create_neuron``, ``list_neurons``) names the neurons the models and
``train.py --neuron`` can build.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import snntorch as snn
import torch
from torch import nn

from . import surrogate
from .functional import RESET_MECHANISMS, LeakyParams, leaky_step
from .kernels import BACKENDS, choose_plan, leaky_scan, report
from .registry import Registry, RegistryEntry
from .step_mode import StepModule, note_neuron_reset


class StepNeuron(StepModule, nn.Module):
    """Base of a neuron layer: a subclass writes :meth:`step`; the rest follows.

    The protocol every neuron of the registry meets (:class:`Leaky` does too):

    * ``step(x, mem=None) -> (spk, mem)``: one step ``(B, ...)``; ``mem=None`` starts from rest.
    * ``multi_step(x_seq, mem=None) -> (spk_seq, mem_seq)``: a sequence ``(T, B, ...)``
      (here: :meth:`step` looped).
    * ``forward``: ``step`` in step mode "s", ``multi_step`` in "m" (the default here).
    * ``kernel_params()``: the :class:`~bntt_snntorch.functional.LeakyParams` a fused kernel
      runs it with, or ``None`` (here: ``None``, so blocks run it unfused).
    """

    default_step_mode = "m"

    def step(self, x: torch.Tensor, mem: torch.Tensor | None = None):
        raise NotImplementedError

    def multi_step(self, x_seq: torch.Tensor, mem: torch.Tensor | None = None):
        spikes, mems = [], []
        for x in x_seq:
            spk, mem = self.step(x, mem)
            spikes.append(spk)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(mems)

    def forward(self, x: torch.Tensor, mem: torch.Tensor | None = None):
        return self.step(x, mem) if self.step_mode == "s" else self.multi_step(x, mem)

    def kernel_params(self) -> LeakyParams | None:
        return None


class Leaky(StepModule, snn.Leaky):
    """``snn.Leaky`` with the same constructor (names, defaults, positional order) and an
    explicit step mode (SpikingJelly's ``step_mode``), never guessed from a tensor's rank.

    * ``step_mode="s"`` (default): ``forward(x, mem)`` is ``snn.Leaky.forward``, one step
      ``(B, ...)`` -> ``(spk, mem)``; ``init_hidden``, ``output``, ``inhibition``,
      ``state_quant`` and the empty ``mem = lif.init_leaky()`` idiom behave as in snnTorch.
    * ``step_mode="m"``: ``forward(x_seq, mem)`` runs a time-major sequence ``(T, B, ...)``
      at once -> ``(spk_seq, mem_seq)``, both ``(T, B, ...)``; ``mem`` ``(B, ...)`` is the
      membrane before the first step (zeros when omitted, empty or wrongly shaped, as in
      snnTorch). With ``init_hidden=True`` the membrane is kept on the layer between calls
      and only ``spk_seq`` is returned (``(spk_seq, mem_seq)`` with ``output=True``).

    ``lif.step(x, mem)`` and ``lif.multi_step(x_seq, mem)`` run one step / a sequence
    whatever the mode, without touching the layer's hidden state.

    Everything ``snn.Leaky`` writes at run time (``mem``, ``reset``, ``state_function``, ...) stays
    snnTorch's: ``lif.reset`` is the reset tensor of the last step, as in snnTorch; the state is
    cleared with ``lif.reset_mem()`` or :func:`bntt_snntorch.utils.reset` (``reset_state()``).
    A membrane set from outside a step (``snntorch.utils.reset``, ``reset_mem()``,
    ``init_leaky()``) starts a new sequence for the BNTT step counters
    (:func:`bntt_snntorch.step_mode.note_neuron_reset`).

    Looped from zero state, the multi-step result equals ``snn.Leaky`` called step by step
    (values and gradients for input, beta and threshold).

    The arguments are ``snn.Leaky``'s, in its order: beta, threshold, spike_grad (default
    :func:`bntt_snntorch.surrogate.atan`, snnTorch's ATan formula with a closed-form
    derivative the fused scans use), surrogate_disable, init_hidden, inhibition,
    learn_beta, learn_threshold, reset_mechanism ("subtract", "zero", "none"),
    state_quant, output, graded_spikes_factor, learn_graded_spikes_factor, reset_delay.
    Then three keyword-only additions:

    * ``step_mode``: "s" (one step a call) or "m" (a whole sequence a call).
    * ``detach_reset``: the BNTT seed / SpikingJelly neuron: fire, then reset in the same
      step with the detached spike (see :func:`bntt_snntorch.functional.leaky_step`);
      ``reset_delay`` is ignored. Not combinable with ``inhibition`` / ``state_quant``.
    * ``backend``: how a sequence runs: "auto" (fused Triton on CUDA, fused torch elsewhere,
      the per-step reference where a fused scan cannot), or "reference", "torch",
      "triton" (:func:`bntt_snntorch.kernels.choose_plan` decides;
      :func:`bntt_snntorch.kernels.explain` shows what ran). ``inhibition``, ``state_quant``,
      ``surrogate_disable`` and a learnable graded-spikes factor always use the
      per-step reference.
    """

    default_step_mode = "s"

    def __init__(
        self,
        beta,
        threshold=1.0,
        spike_grad=None,
        surrogate_disable=False,
        init_hidden=False,
        inhibition=False,
        learn_beta=False,
        learn_threshold=False,
        reset_mechanism="subtract",
        state_quant=False,
        output=False,
        graded_spikes_factor=1.0,
        learn_graded_spikes_factor=False,
        reset_delay=True,
        *,
        step_mode: str | None = None,
        detach_reset: bool = False,
        backend: str = "auto",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
        if detach_reset and (inhibition or state_quant):
            raise ValueError(
                "detach_reset=True (the BNTT seed neuron) cannot be combined with inhibition or "
                "state_quant; use snnTorch's reset (detach_reset=False) for those"
            )
        super().__init__(
            beta,
            threshold,
            surrogate.atan() if spike_grad is None else spike_grad,
            surrogate_disable,
            init_hidden,
            inhibition,
            learn_beta,
            learn_threshold,
            reset_mechanism,
            state_quant,
            output,
            graded_spikes_factor,
            learn_graded_spikes_factor,
            reset_delay,
        )
        if step_mode is not None:
            self.step_mode = step_mode
        self.detach_reset = detach_reset
        self.backend = backend

    def kernel_params(self) -> LeakyParams | None:
        """:meth:`params` when the fused kernels can run this layer (no ``inhibition`` /
        ``state_quant``, which only snnTorch's own step implements), else ``None``."""
        return None if (self.inhibition or self.state_quant) else self.params()

    def params(self) -> LeakyParams:
        """The layer's parameters for the functional kernels."""
        return LeakyParams(
            beta=self.beta,
            threshold=self.threshold,
            spike_grad=self.spike_grad,
            reset_mechanism=self.reset_mechanism,
            reset_delay=self.reset_delay,
            graded_spikes_factor=self.graded_spikes_factor,
            detach_reset=self.detach_reset,
        )

    # -- hidden state -----------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name == "mem" and not self.__dict__.get("_own_write", False):
            note_neuron_reset()  # set from outside a step: snnTorch's reset helpers, reset_mem(), init_leaky()

    @contextlib.contextmanager
    def _writing_state(self):
        """Our own writes of the membrane (a step, reset_state) are no reset signal."""
        outer = self.__dict__.get("_own_write", False)
        self.__dict__["_own_write"] = True
        try:
            yield
        finally:
            self.__dict__["_own_write"] = outer

    def reset_state(self) -> None:
        """Zero the hidden membrane kept by ``init_hidden=True`` (snnTorch's ``reset_mem``); what
        :func:`bntt_snntorch.utils.reset` calls."""
        with self._writing_state():
            self.reset_mem()

    # -- forward --------------------------------------------------------------
    def forward(self, x: torch.Tensor, mem: torch.Tensor | None = None):
        """One step (``step_mode="s"``) or a sequence (``"m"``); see the class docstring."""
        with self._writing_state():
            if self.step_mode == "s":
                return self._forward_single(x, mem)
            return self._forward_multi(x, mem)

    def _forward_single(self, x: torch.Tensor, mem: torch.Tensor | None):
        if not self.detach_reset:
            return super().forward(x, mem)
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        mem = self.mem if mem is None else mem
        if mem.shape != x.shape:
            mem = torch.zeros_like(x)
        spk, self.mem = leaky_step(x, mem, self.params())
        return spk if self.init_hidden and not self.output else (spk, self.mem)

    def _forward_multi(self, x_seq: torch.Tensor, mem: torch.Tensor | None):
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if self.init_hidden:
            mem = self.mem
        self._check_sequence(x_seq, mem)
        spk_seq, mem_seq = self.multi_step(x_seq, _initial_membrane(mem, x_seq))
        if not self.init_hidden:
            return spk_seq, mem_seq
        self.mem = mem_seq[-1]
        return (spk_seq, mem_seq) if self.output else spk_seq

    def _check_sequence(self, x_seq: torch.Tensor, mem: torch.Tensor | None) -> None:
        name = type(self).__name__
        if x_seq.dim() < 2:
            raise ValueError(
                f"{name}(step_mode='m') expects a time-major sequence (T, B, ...), got shape "
                f"{tuple(x_seq.shape)}; for one step call lif.step(x, mem) or use step_mode='s'"
            )
        if mem is not None and mem.numel() and mem.shape == x_seq.shape:
            raise ValueError(
                f"{name}(step_mode='m') got one step: input and mem both {tuple(mem.shape)}; a "
                "multi-step call takes x_seq (T, B, ...) and mem (B, ...). For an snn.Leaky-style "
                "loop use bntt_snntorch.Leaky (step_mode='s') or lif.step(x, mem)"
            )

    # -- stateless entry points -------------------------------------------------
    def multi_step(self, x_seq: torch.Tensor, mem: torch.Tensor | None = None):
        """``x_seq`` ``(T, B, ...)`` -> ``(spk_seq, mem_seq)``, both ``(T, B, ...)``, from membrane
        ``mem`` ``(B, ...)`` (zeros when ``None``). The layer's hidden state is not touched."""
        params = self.kernel_params()
        plan = report(self, choose_plan(x_seq, params, self.backend, neuron=self))
        if params is None:  # inhibition / state_quant: only snnTorch's own step has them (the plan says so)
            return self._loop_snntorch_step(x_seq, mem)
        return leaky_scan(x_seq, params, mem, self.backend, plan, layer=self)

    def step(self, x: torch.Tensor, mem: torch.Tensor | None = None):
        """One step: ``x`` ``(B, ...)`` and membrane ``mem`` -> ``(spk, mem)``; hidden state untouched.

        ``mem=None`` (or an empty / wrongly shaped one) starts from zeros in float32 at least,
        so under bf16 autocast the membrane stays float32 as in the fused multi-step path.
        """
        if mem is None or mem.shape != x.shape:  # snnTorch's rule: init_leaky()'s empty membrane means zeros
            mem = torch.zeros_like(x, dtype=torch.promote_types(x.dtype, torch.float32))
        if self.inhibition or self.state_quant:
            spikes, mems = self._loop_snntorch_step(x.unsqueeze(0), mem)
            return spikes[0], mems[0]
        return leaky_step(x, mem, self.params())

    def _loop_snntorch_step(self, x_seq: torch.Tensor, mem: torch.Tensor | None):
        """``snn.Leaky.forward`` step by step (for inhibition / state_quant), hidden state restored after."""
        saved, hidden, output = self.mem, self.init_hidden, self.output
        self.init_hidden, self.output = False, False
        with self._writing_state():
            try:
                mem = torch.zeros_like(x_seq[0]) if mem is None else mem
                spikes, mems = [], []
                for x in x_seq:
                    spk, mem = snn.Leaky.forward(self, x, mem)
                    spikes.append(spk)
                    mems.append(mem)
            finally:
                self.mem, self.init_hidden, self.output = saved, hidden, output
        return torch.stack(spikes), torch.stack(mems)

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta.tolist() if self.beta.numel() < 5 else '...'}, "
            f"threshold={self.threshold.tolist() if self.threshold.numel() < 5 else '...'}, "
            f"reset_mechanism={self.reset_mechanism!r}, reset_delay={self.reset_delay}, "
            f"step_mode={self.step_mode!r}, detach_reset={self.detach_reset}, spike_grad={self.spike_grad!r}"
        )


class MultiStepLeaky(Leaky):
    """:class:`Leaky` with ``step_mode="m"`` by default (same constructor, same state dict)::

        spk_seq, mem_seq = lif(x_seq)        # x_seq: (T, B, ...) -> both (T, B, ...)
        spk, mem = lif.step(x_t, mem)        # one step, (B, ...), snnTorch style

    Set ``lif.step_mode = "s"`` for ``snn.Leaky``'s per-step ``forward``.
    """

    default_step_mode = "m"


def _initial_membrane(mem: torch.Tensor | None, x_seq: torch.Tensor) -> torch.Tensor | None:
    """snnTorch's rule: an empty or wrongly shaped membrane (``init_leaky()``) means zeros."""
    if mem is None or mem.shape != x_seq.shape[1:]:
        return None
    return mem


# -- the registry ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NeuronInfo(RegistryEntry):
    """A registered neuron: ``factory(beta, threshold=1.0)`` builds a multi-step layer that meets
    :class:`StepNeuron`'s protocol (its reset and surrogate are the layer's own, ``layer.params()``);
    with ``takes_features`` the factory also takes the layer's channel count, ``features=C``."""

    takes_features: bool = False


NEURONS: Registry[NeuronInfo] = Registry("neuron", NeuronInfo)
register_neuron = NEURONS.register  # @register_neuron, @register_neuron(takes_features=True): fn(beta, threshold=1.0)
neuron_info = NEURONS.get
list_neurons = NEURONS.names


def create_neuron(name: str, beta: float, threshold: float = 1.0, features: int | None = None) -> nn.Module:
    """A layer of the registered neuron ``name`` with leak ``beta`` and ``threshold``; ``features``: the layer's
    channel count, for the neurons that need it (``takes_features``: e.g. ``mpbn``), ignored by the others."""
    info = neuron_info(name)
    if info.takes_features:
        return info.factory(beta, threshold, features=features)
    return info.factory(beta, threshold)


@register_neuron
def bntt_leaky(
    beta: float = 0.95, threshold: float = 1.0, backend: str = "auto", reset_mechanism: str = "subtract"
) -> MultiStepLeaky:
    """The BNTT seed neuron: soft reset in the same step, reset detached, triangle surrogate."""
    return MultiStepLeaky(
        beta,
        threshold=threshold,
        spike_grad=surrogate.bntt_triangle(0.3, threshold),
        reset_mechanism=reset_mechanism,
        detach_reset=True,
        backend=backend,
    )


@register_neuron
def bntt_leaky_zero(beta: float = 0.95, threshold: float = 1.0) -> MultiStepLeaky:
    """The BNTT seed neuron with reset to zero: fire, then the membrane is set to 0 in the same step."""
    return bntt_leaky(beta, threshold, reset_mechanism="zero")


@register_neuron
def leaky(beta: float = 0.95, threshold: float = 1.0) -> MultiStepLeaky:
    """``snn.Leaky`` with its defaults (reset by subtraction from the previous step, ATan surrogate)."""
    return MultiStepLeaky(beta, threshold=threshold)
