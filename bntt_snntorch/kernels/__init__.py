"""Fused leaky scans and the choice between them.

Backends of :func:`leaky_scan`:

* ``"reference"`` — :func:`bntt_snntorch.functional.leaky_sequence_reference`, autograd through every step.
* ``"torch"`` — one autograd node, plain torch loops (:mod:`.torch_scan`); any device.
* ``"triton"`` — one Triton kernel per direction (:mod:`.triton_scan`); CUDA.
* ``"auto"`` — Triton on CUDA when available, else torch; the reference when
  the surrogate is not a :class:`bntt_snntorch.surrogate.Surrogate` (its
  derivative is then only known to autograd) or the graded-spikes factor is
  learnable or per neuron.

Under ``torch.compile`` a fused scan stays one opaque call (the compiler
does not unroll T steps of it); the layers around it are compiled.

:func:`bntt_leaky_scan` (:mod:`.bntt_scan`) goes one step further for the
usual ``synapse -> BNTT -> leaky`` block: normalisation and neuron as one
node that keeps only the synapse output for backward. On CPU its steps run
as TorchInductor-compiled loops (:mod:`.compiled_steps`) for layers of at
least ``COMPILE_MIN_NEURONS`` neurons; ``BNTT_COMPILED_KERNELS=0`` keeps
them eager (batch norm's own kernels), ``=1`` compiles every size.
"""

from __future__ import annotations

import warnings

import torch

from ..functional import LeakyParams, leaky_sequence_reference
from ..surrogate import Surrogate
from . import spike_synapse
from .bntt_scan import COMPILE_MIN_NEURONS, bntt_leaky_scan
from .scan_math import ScanMode
from .torch_scan import leaky_scan_torch

__all__ = [
    "BACKENDS",
    "COMPILE_MIN_NEURONS",
    "ScanMode",
    "bntt_leaky_scan",
    "leaky_scan",
    "select_backend",
    "spike_synapse",
]

BACKENDS = ("auto", "reference", "torch", "triton")


def _triton_ready(x: torch.Tensor, p: LeakyParams) -> bool:
    from . import triton_scan

    return not _TRITON_BROKEN and triton_scan.available(x) and triton_scan.supports(p)


def _fusable(p: LeakyParams) -> bool:
    """A fused scan needs the surrogate's closed-form derivative and a constant scalar spike factor."""
    g = torch.as_tensor(p.graded_spikes_factor)
    return isinstance(p.spike_grad, Surrogate) and g.numel() == 1 and not g.requires_grad


def select_backend(x_seq: torch.Tensor, p: LeakyParams, backend: str = "auto") -> str:
    """The backend that will run ``x_seq`` with parameters ``p``; raises if a forced one cannot."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    fusable = _fusable(p)
    if backend == "auto":
        if not fusable:
            return "reference"
        return "triton" if x_seq.is_cuda and _triton_ready(x_seq, p) else "torch"
    if backend in ("torch", "triton") and not fusable:
        raise ValueError(
            f"backend={backend!r} needs a spike_grad from bntt_snntorch.surrogate (closed-form derivative) and a "
            f"fixed scalar graded_spikes_factor, got {p.spike_grad!r}; use backend='reference' or 'auto'"
        )
    if backend == "triton" and not _triton_ready(x_seq, p):
        raise ValueError("backend='triton' needs a CUDA tensor, Triton, and scalar beta/threshold/graded_spikes_factor")
    return backend


@torch.compiler.disable
def _fused_scan(chosen, x_seq, p: LeakyParams, mem):
    mem0 = torch.zeros(x_seq.shape[1:], dtype=torch.float32, device=x_seq.device) if mem is None else mem.float()
    g = torch.as_tensor(p.graded_spikes_factor, dtype=torch.float32, device=x_seq.device)
    beta, theta = p.beta.float(), p.threshold.float()
    mode = ScanMode.from_params(p)
    if chosen == "triton":
        from .triton_scan import leaky_scan_triton

        return leaky_scan_triton(x_seq, mem0, beta, theta, g, p.spike_grad, mode)
    return leaky_scan_torch(x_seq, mem0, beta, theta, g, p.spike_grad, mode)


def leaky_scan(x_seq: torch.Tensor, p: LeakyParams, mem: torch.Tensor | None = None, backend: str = "auto"):
    """Run a leaky layer over ``x_seq`` ``(T, B, ...)`` -> ``(spk_seq, mem_seq)``.

    Fused backends keep the membrane in float32 (also under bf16 autocast) and
    return spikes in the input's dtype.
    """
    chosen = select_backend(x_seq, p, backend)
    if chosen == "reference":
        return leaky_sequence_reference(x_seq, p, mem)
    if chosen == "triton" and backend == "auto":
        try:
            return _fused_scan("triton", x_seq, p, mem)
        except Exception as err:  # e.g. a Triton build failure on an untested GPU
            _disable_triton(err)
            chosen = "torch"
    return _fused_scan(chosen, x_seq, p, mem)


_TRITON_BROKEN: list[str] = []


def _disable_triton(err: Exception) -> None:
    """After a Triton failure, "auto" uses the torch scan for the rest of the process (warned once)."""
    if not _TRITON_BROKEN:
        warnings.warn(
            f"the Triton leaky scan failed ({type(err).__name__}: {err}); using the torch scan instead", stacklevel=3
        )
    _TRITON_BROKEN.append(repr(err))
