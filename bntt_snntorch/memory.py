"""What a network keeps for backward: :func:`set_memory`.

* ``"default"``: each fused ``synapse -> BNTT -> leaky`` node keeps the synapse's output ``(T, B, C, ...)`` and its
  input (int8 codes where it is spikes), the ``(T, C)`` tables besides.
* ``"low"``: the node keeps the synapse's input only (spikes as bit planes: 1 bit a spike, 2 for the signed
  encoded input, 3 after a 2x2 pooling; where the range is not known, int8 codes) and computes the synapse's output
  again in backward (one more convolution forward a block): the same operation on the same values, so the
  gradients are the default mode's bit for bit. Blocks that are not one fused node (another norm than BNTT, TAB, a
  neuron the kernels do not run, a synapse the node does not run inside) keep what they keep;
  :func:`bntt_snntorch.kernels.explain` says per layer what was applied.
"""

from __future__ import annotations

from torch import nn

from .layers import SpikingBlock

MEMORY_MODES = ("default", "low")


def set_memory(model: nn.Module, mode: str = "low") -> nn.Module:
    """Set what every :class:`~bntt_snntorch.layers.SpikingBlock` of ``model`` keeps for backward (``mode``: one of
    :data:`MEMORY_MODES`, see the module); returns ``model``."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"memory mode must be one of {', '.join(MEMORY_MODES)}, got {mode!r}")
    for module in model.modules():
        if isinstance(module, SpikingBlock):
            module.memory = mode
    return model
