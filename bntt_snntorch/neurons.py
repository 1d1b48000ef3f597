"""``MultiStepLeaky``: ``snn.Leaky`` that takes a whole time-major sequence."""

from __future__ import annotations

import snntorch as snn
import torch

from . import surrogate
from .functional import RESET_MECHANISMS, LeakyParams, leaky_step
from .kernels import BACKENDS, leaky_scan


class MultiStepLeaky(snn.Leaky):
    """A leaky integrate-and-fire layer over a time-major sequence.

    It is an ``snn.Leaky`` (same arguments, buffers, parameters and state-dict
    keys) whose ``forward`` runs all steps at once::

        spk_seq, mem_seq = lif(x_seq)        # x_seq: (T, B, ...) -> both (T, B, ...)
        spk, mem = lif.step(x_t, mem)        # one step, (B, ...), snnTorch style

    Looped from zero state, the result equals ``snn.Leaky`` called step by step
    (values and gradients for input, beta and threshold).

    Args:
        beta: membrane decay, float or tensor broadcastable to ``(B, ...)``; clamped to [0, 1].
        threshold: firing threshold.
        spike_grad: surrogate, ``spk = spike_grad(mem - threshold)``; default
            :func:`bntt_snntorch.surrogate.atan` (snnTorch's default, same formula).
        learn_beta, learn_threshold: make beta / threshold trainable parameters.
        reset_mechanism: "subtract", "zero" or "none".
        reset_delay: snnTorch's flag (``False``: reset in the step that fired).
        graded_spikes_factor: spikes are scaled by it.
        detach_reset: the BNTT seed / SpikingJelly neuron: fire, then reset in
            the same step with the detached spike (see
            :func:`bntt_snntorch.functional.leaky_step`); ``reset_delay`` is ignored.
        backend: how ``forward`` runs the scan: "auto" (default: fused Triton
            on CUDA, fused torch elsewhere, the per-step reference for
            surrogates without a closed-form derivative), or force
            "reference", "torch" or "triton" (see :mod:`bntt_snntorch.kernels`).
    """

    def __init__(
        self,
        beta,
        threshold=1.0,
        spike_grad=None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        reset_delay: bool = True,
        graded_spikes_factor=1.0,
        detach_reset: bool = False,
        backend: str = "auto",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
        super().__init__(
            beta,
            threshold=threshold,
            spike_grad=surrogate.atan() if spike_grad is None else spike_grad,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            reset_mechanism=reset_mechanism,
            graded_spikes_factor=graded_spikes_factor,
            reset_delay=reset_delay,
        )
        self.detach_reset = detach_reset
        self.backend = backend

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

    def forward(self, x_seq: torch.Tensor, mem: torch.Tensor | None = None):
        """``x_seq`` ``(T, B, ...)`` -> ``(spk_seq, mem_seq)``, both ``(T, B, ...)``.

        ``mem`` (``(B, ...)``) is the membrane before the first step, zeros when omitted.
        """
        if x_seq.dim() < 2:
            raise ValueError(
                f"MultiStepLeaky expects a time-major sequence (T, B, ...), got shape {tuple(x_seq.shape)}; "
                "for a single step call lif.step(x, mem)"
            )
        return leaky_scan(x_seq, self.params(), mem, self.backend)

    def step(self, x: torch.Tensor, mem: torch.Tensor | None = None):
        """One step: ``x`` ``(B, ...)`` and membrane ``mem`` -> ``(spk, mem)``.

        ``mem=None`` starts from zeros in float32 at least, so under bf16
        autocast the membrane stays float32 as in the fused multi-step path.
        """
        if mem is None:
            mem = torch.zeros_like(x, dtype=torch.promote_types(x.dtype, torch.float32))
        return leaky_step(x, mem, self.params())

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta.tolist() if self.beta.numel() < 5 else '...'}, "
            f"threshold={self.threshold.tolist() if self.threshold.numel() < 5 else '...'}, "
            f"reset_mechanism={self.reset_mechanism!r}, reset_delay={self.reset_delay}, "
            f"detach_reset={self.detach_reset}, spike_grad={self.spike_grad!r}"
        )


def bntt_leaky(beta: float = 0.95, threshold: float = 1.0, backend: str = "auto") -> MultiStepLeaky:
    """The BNTT seed neuron: soft reset in the same step, reset detached, triangle surrogate."""
    return MultiStepLeaky(
        beta,
        threshold=threshold,
        spike_grad=surrogate.bntt_triangle(0.3, threshold),
        reset_mechanism="subtract",
        detach_reset=True,
        backend=backend,
    )
