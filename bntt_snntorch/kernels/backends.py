"""The table of backends of the fused ``BNTT -> leaky`` block: one object a path, each with what it supports, its
statistics, forward and backward, and where it falls back.

Every backend computes the same block, :mod:`bntt_snntorch.definition`'s (the eager one by calling it on torch
tensors, the C loops and the Triton kernels from C functions and ``triton.jit`` functions built from its source),
in the layout ``(T, B, C, ...)``:

* :meth:`Backend.statistics` — each step's per-channel batch mean and biased variance ``(T, C)``;
* :meth:`Backend.forward` — the spikes (and the last membrane) from the sequence, the block's
  :class:`Coefficients` and the initial membrane;
* :meth:`Backend.forward_with_statistics` — training's forward: the statistics, the coefficients and the spikes
  (one pass over each channel where the backend can; the C loops also update the running statistics there);
* :meth:`Backend.backward` — the input's gradient (batch norm's, through the statistics in training), the
  gammas' ``sum(dy * xhat)``, the leak's and threshold's raw sums, and ``sum(dy)`` (TAB's bias and prefix
  statistics need it, :mod:`.fused_tab`).

:data:`BLOCK_BACKENDS` is the table; :func:`~bntt_snntorch.kernels.plan.choose_plan` is the one place that picks an
entry, :mod:`.fused_block` the one autograd node that runs any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .. import definition as D
from ..definition import Variant
from ..surrogate import from_code
from .torch_scan import NeuronSpec, NeuronTensors, backward_scan, forward_scan, params_tensor


@dataclass(frozen=True)
class BlockSpec:
    """The static part of one fused block call: the ``neuron`` (variant, surrogate), batch norm's ``eps``, the
    block's input ``scale`` (folded into the coefficients), ``training`` (the statistics depend on the input) and
    ``through_time`` (the gradient carried from step t + 1 to step t; not by the online rules)."""

    neuron: NeuronSpec
    eps: float
    scale: float
    training: bool
    through_time: bool = True

    @property
    def surrogate(self) -> tuple[int, float, float]:
        """``(SURR, a, b)``: the surrogate's code and parameters, as the C and Triton kernels take them."""
        surrogate = self.neuron.surrogate
        return surrogate.code, *map(float, surrogate.args())

    def constants(self) -> tuple:
        """The spec as numbers a ``torch.library`` op takes: ``(codes, surrogate, unit_spikes, eps, scale,
        training, through_time)`` (:meth:`of_constants` rebuilds it)."""
        codes = [int(c) for c in self.neuron.variant.codes]
        return codes, list(self.surrogate), self.neuron.unit_spikes, self.eps, self.scale, self.training, \
            self.through_time  # fmt: skip

    @classmethod
    def of_constants(cls, codes, surrogate, unit_spikes, eps, scale, training, through_time) -> BlockSpec:
        """The spec of :meth:`constants`."""
        neuron = NeuronSpec(Variant.from_codes(codes), from_code(int(surrogate[0]), *surrogate[1:]), unit_spikes)
        return cls(neuron, eps, scale, training, through_time)


class Coefficients(NamedTuple):
    """BNTT as ``current = k * x + shift`` per step and channel: ``k``, ``shift`` and the normaliser ``rstd``, each
    ``(T, C)`` and contiguous, in the membrane's precision."""

    k: torch.Tensor
    shift: torch.Tensor
    rstd: torch.Tensor

    @classmethod
    def of(cls, weight: torch.Tensor | None, mean: torch.Tensor, var: torch.Tensor, spec: BlockSpec) -> Coefficients:
        """The definition's coefficients from the gammas ``weight`` (None: ``affine=False``) and the statistics."""
        rstd = D.inverse_std(var, spec.eps)
        k, shift = D.coefficients(mean, rstd, 1.0 if weight is None else weight.detach().to(var.dtype), spec.scale)
        return cls(k.contiguous(), shift.contiguous(), rstd.contiguous())


class Backend:
    """One path of the fused block (see the module docstring). ``name``: the plan's path; ``fallback``: the path
    taken where this one cannot compile or launch here (None: it always can); ``updates_running_statistics``:
    whether :meth:`forward_with_statistics` updates the running statistics it is given in its own pass."""

    name: str
    fallback: str | None = None
    updates_running_statistics = False

    def supports(self, dtype: torch.dtype, device: str, scalar: bool) -> str | None:
        """Why this backend cannot run a block fed ``dtype`` input on ``device`` (a device type) with a leak and
        threshold that are one number each (``scalar``) or not, or None."""
        return None

    def statistics(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x_seq, coefficients: Coefficients, mem0, neuron: NeuronTensors, spec: BlockSpec, last: bool):
        """``(spikes (T, B, C, ...) in x_seq's dtype, last membrane (B, C, ...) or None unless last)`` from membrane
        ``mem0`` (None: zeros)."""
        raise NotImplementedError

    def forward_with_statistics(self, x_seq, weight, mem0, neuron: NeuronTensors, spec: BlockSpec, last: bool,
                                running=None):  # fmt: skip
        """Training's forward: ``(spikes, last membrane, mean, var, Coefficients)``: the batch statistics
        (:meth:`statistics`), the coefficients from them and the gammas ``weight`` ``(T, C)`` (or None), then
        :meth:`forward`. ``running``: the packed running statistics to update in the same pass (only where
        :attr:`updates_running_statistics`)."""
        mean, var = self.statistics(x_seq)
        coefficients = Coefficients.of(weight, mean, var, spec)
        spikes, mem = self.forward(x_seq, coefficients, mem0, neuron, spec, last)
        return spikes, mem, mean, var, coefficients

    def backward(self, grad_spk, x_seq, coefficients: Coefficients, mean, mem0, neuron: NeuronTensors,
                 spec: BlockSpec, need: tuple[bool, bool], out=None):  # fmt: skip
        """``(dL/dx, sum(dy * xhat) (T, C), leak term, threshold term, sum(dy) (T, C))`` for the forward from
        ``mem0`` (None: zeros), ``dy = dL/dcurrent``; the leak's (of the clamped leak, in beta's shape) and
        threshold's sums where ``need = (beta, theta)`` asks for them (else anything). ``out``: where to write
        ``dL/dx`` (``grad_spk`` itself, contiguous and of ``x_seq``'s shape and dtype: each element of it is read
        before the same element of the result is written), else a new tensor."""
        raise NotImplementedError


def neuron_gradients(d_beta, d_theta, beta: torch.Tensor, theta: torch.Tensor, need: tuple[bool, bool]):
    """``(dL/dbeta, dL/dtheta)`` in their parameters' shapes from a backward's raw leak and threshold terms (the
    leak's through its clamp), None where ``need = (beta, theta)`` does not ask for them."""
    grad_beta = (d_beta * D.leak_gradient_mask(beta)).reshape(beta.shape) if need[0] else None
    grad_theta = d_theta.reshape(theta.shape) if need[1] else None
    return grad_beta, grad_theta


def _per_channel(v: torch.Tensor, dims: int) -> torch.Tensor:
    """``(T, C)`` -> ``(T, C, 1, ...)``: broadcastable against one step ``(B, C, ...)`` of ``dims`` dimensions."""
    return v.view(*v.shape, *([1] * (dims - 2)))


class EagerBackend(Backend):
    """torch's ops, the definition called on ``(B, C, ...)`` steps: any device and dtype (the membrane in float32
    at least; half-precision input rounds the current as batch norm's output does); the statistics from batch
    norm's own kernel."""

    name = "bntt-eager"

    def statistics(self, x_seq):
        state = torch.promote_types(x_seq.dtype, torch.float32)  # half-precision input: its statistics unrounded
        with torch.no_grad():
            stats = [torch.batch_norm_update_stats(x.to(state), None, None, 0.0) for x in x_seq]
        return tuple(torch.stack(v) for v in zip(*stats))

    def _scan(self, x_seq, coefficients: Coefficients, mem0, neuron: NeuronTensors, spec: BlockSpec, keep: str):
        """The forward steps keeping ``keep`` ("spk" in the input's dtype, or "h"), and the last membrane."""
        state = coefficients.k.dtype
        k, shift = (_per_channel(v, x_seq.dim() - 1) for v in coefficients[:2])
        ROUND = x_seq.dtype in (torch.bfloat16, torch.float16)
        m0 = torch.zeros(x_seq.shape[1:], dtype=state, device=x_seq.device) if mem0 is None else mem0
        buffer = torch.empty(x_seq.shape, dtype=x_seq.dtype if keep == "spk" else state, device=x_seq.device)
        last = forward_scan(lambda t: D.current(x_seq[t], k[t], shift[t], ROUND), x_seq.shape[0], m0, neuron,
                            spec.neuron, {keep: buffer})  # fmt: skip
        return buffer, last, m0

    def forward(self, x_seq, coefficients, mem0, neuron, spec, last):
        spikes, mem, _ = self._scan(x_seq, coefficients, mem0, neuron, spec, "spk")
        return spikes, mem if last else None

    def backward(self, grad_spk, x_seq, coefficients, mean, mem0, neuron, spec, need, out=None):
        h_seq, _, m0 = self._scan(x_seq, coefficients, mem0, neuron, spec, "h")
        state, dims = h_seq.dtype, x_seq.dim() - 1
        k, m, rstd = (_per_channel(v, dims) for v in (coefficients.k, mean, coefficients.rstd))
        channel_dims = (0, *range(2, dims))
        count = x_seq[0].numel() // x_seq.shape[2]
        grad_x = torch.empty_like(x_seq) if out is None else out
        sum_dy_xhat, sums_dy = torch.empty_like(coefficients.k), torch.empty_like(coefficients.k)

        def grad_x_at(t, delta_h):  # batch norm's backward of step t, the definition's
            dy, x = delta_h.to(x_seq.dtype).to(state), x_seq[t].to(state)  # a half-precision current's gradient
            sum_dy, sum_centred = dy.sum(channel_dims), D.centred_gradient(dy, x, m[t]).sum(channel_dims)
            sums_dy[t] = sum_dy
            sum_dy_xhat[t], mean_dy, mean_dy_xhat = D.gradient_moments(sum_dy, sum_centred, coefficients.rstd[t],
                                                                       count)  # fmt: skip
            mean_dy, mean_dy_xhat = (_per_channel(v[None], dims)[0] for v in (mean_dy, mean_dy_xhat))
            grad_x[t] = D.normalise_input_grad(dy, x, k[t], m[t], rstd[t], mean_dy, mean_dy_xhat, spec.training)

        _, d_beta, d_theta = backward_scan(grad_spk, None, h_seq, m0, neuron, spec.neuron, need, grad_x_at,
                                           spec.through_time)  # fmt: skip
        return grad_x, sum_dy_xhat, d_beta, d_theta, sums_dy


class CBackend(Backend):
    """The C loops of ``csrc/bntt.c`` (:mod:`.c_bntt`): float32 CPU input, a scalar leak and threshold; training's
    forward in one pass over each channel, the running statistics updated in it."""

    name = "bntt-c"
    fallback = "bntt-eager"
    updates_running_statistics = True

    def supports(self, dtype, device, scalar):
        if device != "cpu" or dtype != torch.float32:
            return f"the C loops take float32 CPU input, got {dtype} on {device}"
        return None if scalar else "the C loops take a scalar beta and threshold"

    @staticmethod
    def _build(spec: BlockSpec):
        from .c_definition import Build

        return Build(spec.neuron.variant.codes, spec.surrogate, spec.training, spec.through_time)

    def statistics(self, x_seq):
        from . import c_bntt

        return c_bntt.batch_statistics(x_seq)

    def forward(self, x_seq, coefficients, mem0, neuron, spec, last):
        from . import c_bntt

        m0 = None if mem0 is None else mem0.contiguous()
        return c_bntt.forward(x_seq.contiguous(), coefficients.k, coefficients.shift, m0, params_tensor(neuron),
                              self._build(spec), last)  # fmt: skip

    def forward_with_statistics(self, x_seq, weight, mem0, neuron, spec, last, running=None):
        from . import c_bntt

        w = None if weight is None else weight.detach().float().contiguous()
        m0 = None if mem0 is None else mem0.contiguous()
        running = None if running is None else c_bntt.RunningStatistics(*running)
        spikes, mem, mean, var, rstd, k, shift = c_bntt.forward_with_statistics(
            x_seq.contiguous(), w, spec.eps, spec.scale, m0, params_tensor(neuron), self._build(spec), last, running
        )
        return spikes, mem, mean, var, Coefficients(k, shift, rstd)

    def backward(self, grad_spk, x_seq, coefficients, mean, mem0, neuron, spec, need, out=None):
        from . import c_bntt

        m0 = None if mem0 is None else mem0.contiguous()
        grad_x, sum_dy_xhat, sum_dy, d_beta, d_theta = c_bntt.backward(
            grad_spk, x_seq.contiguous(), coefficients.k, coefficients.shift, mean.contiguous(), coefficients.rstd, m0,
            params_tensor(neuron), self._build(spec), out,
        )  # fmt: skip
        return grad_x, sum_dy_xhat, d_beta, d_theta, sum_dy


class TritonBackend(Backend):
    """The Triton kernels of :mod:`.triton_bntt`: CUDA (or any device under ``TRITON_INTERPRET=1``),
    float32 / bfloat16 / float16 input, a scalar leak and threshold."""

    name = "bntt-triton"
    fallback = "bntt-eager"

    def supports(self, dtype, device, scalar):
        if not scalar:
            return "the Triton kernels take a scalar beta and threshold"
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return f"the Triton kernels take float32/bfloat16/float16 input, got {dtype}"
        return None

    def statistics(self, x_seq):
        from . import triton_bntt

        return triton_bntt.batch_statistics(x_seq)

    @staticmethod
    def _initial(x_seq, mem0):
        return torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device) if mem0 is None else mem0

    def forward(self, x_seq, coefficients, mem0, neuron, spec, last):
        from . import triton_bntt

        spikes, mem = triton_bntt.forward(x_seq.contiguous(), coefficients.k, coefficients.shift,
                                          self._initial(x_seq, mem0).contiguous(), params_tensor(neuron),
                                          spec.neuron.variant.codes)  # fmt: skip
        return spikes, mem if last else None

    def backward(self, grad_spk, x_seq, coefficients, mean, mem0, neuron, spec, need, out=None):
        from . import triton_bntt

        return triton_bntt.backward(
            grad_spk, x_seq.contiguous(), coefficients.k, coefficients.shift, mean.contiguous(), coefficients.rstd,
            self._initial(x_seq, mem0).contiguous(), params_tensor(neuron), spec.neuron.variant.codes, spec.surrogate,
            spec.training, spec.through_time, out,
        )  # fmt: skip


#: The backends of the fused block, by path: the one table (:func:`~.plan.choose_plan` picks an entry).
BLOCK_BACKENDS: dict[str, Backend] = {b.name: b for b in (EagerBackend(), CBackend(), TritonBackend())}
