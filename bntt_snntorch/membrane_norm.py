"""MPBN: a leaky neuron with a batch norm on its membrane (Guo et al., ICCV 2023).

Each step charges the membrane, normalises it with a per-layer batch norm, and fires where the
normalised membrane exceeds the threshold::

    u_t = beta * m_{t-1} + x_t          (charge)
    n_t = BN(u_t)                       (statistics of this step's batch; running statistics updated each step)
    s_t = H(n_t - theta)                (fire)
    m_t = reset(u_t, s_t)               (authors: the un-normalised membrane is carried and reset)

The authors' code (``yfguo91/MPBN``, ``models/spike_layer.py``, ``mem_update``) resets to zero,
``m_t = u_t * (1 - s_t)``; ``reset_mechanism="subtract"`` subtracts the threshold instead.
``carry="normalised"`` carries ``n_t`` instead of ``u_t``, as SpikingJelly 2.0's ``MPBNLIFNode`` does
(with ``beta = 1 - 1 / tau`` and a sigmoid surrogate of slope 4 it equals that class, tested).

At inference the batch norm is a per-channel affine map, ``n - theta = weight / sqrt(var + eps) * (u - theta')``
with ``theta' = (theta - bias) * sqrt(var + eps) / weight + mean``: firing where ``n_t > theta`` is firing where
``u_t`` exceeds a per-channel threshold ``theta'`` (falls below it where ``weight < 0``). :func:`fold_thresholds`
rewrites a model that way (the authors' carry only: SpikingJelly's carries ``n``, which no threshold on ``u``
expresses).

The statistics of step t need the whole batch's membrane at t before the layer fires at t: a
per-step reduction inside the scan. It runs as eager torch operations step by step (``explain``
says so); the fused kernels are the BNTT blocks'.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .neurons import StepNeuron, register_neuron
from .surrogate import Surrogate, atan

CARRIES = ("membrane", "normalised")
RESETS = ("zero", "subtract")


class MembraneBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``torch.nn.BatchNorm`` of a membrane of any rank, ``(B, C)`` or ``(B, C, ...)``: per channel, over
    the batch and the positions (``BatchNorm1d`` / ``2d``'s state dict keys)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"MembraneBatchNorm({self.num_features}): expected a membrane (B, C, ...) with C={self.num_features}, "
                f"got shape {tuple(x.shape)}"
            )


class MPBNLeaky(StepNeuron):
    """The MPBN neuron (see the module's docstring): ``features`` channels, leak ``beta``, threshold
    ``theta``; ``spike_grad`` the surrogate (default :func:`bntt_snntorch.surrogate.atan`);
    ``reset_mechanism`` "zero" (the authors') or "subtract"; ``carry`` "membrane" (the authors') or
    "normalised" (SpikingJelly's); ``eps`` / ``momentum`` the batch norm's.

    ``step(x, mem=None) -> (spk, mem)`` for one step ``(B, C, ...)``; ``multi_step(x_seq, mem=None)`` for
    ``(T, B, C, ...)`` (the steps looped). ``mem`` is the carried membrane (``u`` or ``n``).
    """

    unfused_reason = "MPBN normalises its membrane with each step's batch statistics: eager steps, looped"

    def __init__(
        self,
        features: int,
        beta: float = 0.95,
        threshold: float = 1.0,
        spike_grad: Surrogate | None = None,
        reset_mechanism: str = "zero",
        carry: str = "membrane",
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        step_mode: str | None = None,
    ):
        super().__init__()
        if reset_mechanism not in RESETS:
            raise ValueError(f"reset_mechanism must be one of {', '.join(RESETS)}, got {reset_mechanism!r}")
        if carry not in CARRIES:
            raise ValueError(f"carry must be one of {', '.join(CARRIES)}, got {carry!r}")
        self.beta, self.threshold = float(beta), float(threshold)
        self.spike_grad = spike_grad or atan()
        self.reset_mechanism, self.carry = reset_mechanism, carry
        self.bn = MembraneBatchNorm(features, eps=eps, momentum=momentum)
        if step_mode is not None:
            self.step_mode = step_mode

    def step(self, x: torch.Tensor, mem: torch.Tensor | None = None):
        """One step ``x`` ``(B, C, ...)`` from the carried membrane ``mem`` (None: at rest) -> ``(spk, mem)``."""
        charged = x if mem is None else self.beta * mem + x
        normalised = self.bn(charged)
        spk = self.spike_grad(normalised - self.threshold)
        carried = charged if self.carry == "membrane" else normalised
        if self.reset_mechanism == "zero":
            return spk, carried * (1.0 - spk)
        return spk, carried - spk * self.threshold

    def extra_repr(self) -> str:
        return (
            f"{self.bn.num_features}, beta={self.beta}, threshold={self.threshold}, spike_grad={self.spike_grad!r}, "
            f"reset_mechanism={self.reset_mechanism!r}, carry={self.carry!r}, step_mode={self.step_mode!r}"
        )


class FoldedMPBNLeaky(StepNeuron):
    """An :class:`MPBNLeaky` at inference, its batch norm folded into per-channel thresholds: fires where
    ``sign_c * (u - theta'_c) > 0`` (``sign_c``: the sign of the norm's weight), resets ``u`` as the neuron
    did. Built by :func:`fold_thresholds` (:meth:`fold`) or from the values themselves (NIR import);
    ``thresholds`` and ``signs`` are ``(C,)`` buffers."""

    def __init__(
        self,
        thresholds: torch.Tensor,
        signs: torch.Tensor,
        beta: float = 0.95,
        threshold: float = 1.0,
        spike_grad: Surrogate | None = None,
        reset_mechanism: str = "zero",
    ):
        super().__init__()
        if reset_mechanism not in RESETS:
            raise ValueError(f"reset_mechanism must be one of {', '.join(RESETS)}, got {reset_mechanism!r}")
        self.register_buffer("thresholds", torch.as_tensor(thresholds).flatten().clone())
        self.register_buffer("signs", torch.as_tensor(signs).flatten().clone())
        self.beta, self.threshold = float(beta), float(threshold)
        self.spike_grad = spike_grad or atan()
        self.reset_mechanism = reset_mechanism

    @classmethod
    def fold(cls, neuron: MPBNLeaky, name: str = "neuron") -> FoldedMPBNLeaky:
        """``neuron`` with its batch norm's running statistics and affine folded into
        ``theta' = (theta - bias) * sqrt(var + eps) / weight + mean``; ``name`` names it in errors."""
        bn = neuron.bn
        if neuron.carry != "membrane":
            raise ValueError(
                f"{name}: carry={neuron.carry!r} carries the normalised membrane, which no threshold on the membrane "
                "expresses; fold_thresholds folds the authors' MPBN (carry='membrane')"
            )
        weight = bn.weight.detach() if bn.affine else torch.ones_like(bn.running_mean)
        bias = bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)
        zero = torch.nonzero(weight == 0).flatten().tolist()
        if zero:
            raise ValueError(
                f"{name}: the membrane norm's weight is 0 in channel(s) {zero[:8]}: they fire on the bias alone, "
                "whatever the membrane, which no threshold expresses"
            )
        std = torch.sqrt(bn.running_var + bn.eps)
        folded = cls((neuron.threshold - bias) * std / weight + bn.running_mean, torch.sign(weight), neuron.beta,
                     neuron.threshold, neuron.spike_grad, neuron.reset_mechanism)  # fmt: skip
        folded.step_mode = neuron.step_mode
        return folded

    def step(self, x: torch.Tensor, mem: torch.Tensor | None = None):
        """One step ``x`` ``(B, C, ...)`` from the membrane ``mem`` (None: at rest) -> ``(spk, mem)``."""
        charged = x if mem is None else self.beta * mem + x
        shape = (1, -1, *[1] * (charged.dim() - 2))
        spk = self.spike_grad(self.signs.view(shape) * (charged - self.thresholds.view(shape)))
        if self.reset_mechanism == "zero":
            return spk, charged * (1.0 - spk)
        return spk, charged - spk * self.threshold


def fold_thresholds(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every :class:`MPBNLeaky`'s batch norm folded into per-channel
    thresholds (:class:`FoldedMPBNLeaky`); its eval outputs equal ``model``'s (to rounding). A norm weight of 0
    is an error naming the layer; ``model`` is left as it is."""
    folded = copy.deepcopy(model).eval()
    for name, module in list(folded.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, MPBNLeaky):
                path = f"{name}.{child_name}" if name else child_name
                setattr(module, child_name, FoldedMPBNLeaky.fold(child, path).eval())
    return folded


@register_neuron(takes_features=True)
def mpbn(beta: float = 0.95, threshold: float = 1.0, features: int | None = None) -> MPBNLeaky:
    """MPBN (Guo et al. 2023): a batch norm on the membrane before firing, the raw membrane reset to zero."""
    if features is None:
        raise ValueError("the mpbn neuron normalises its membrane per channel: give its channel count (features=C)")
    return MPBNLeaky(features, beta, threshold)
