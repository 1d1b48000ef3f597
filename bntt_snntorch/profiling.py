"""What a forward pass keeps for backward, counted per module.

``saved_tensor_bytes(model, x_seq)`` runs one training forward under
:func:`torch.autograd.graph.saved_tensors_hooks` and attributes every tensor
an autograd node saves to the innermost module running at that moment. Each
storage is counted once (a tensor saved by two nodes, or two views of one
buffer, are one allocation); parameters are not counted (they exist anyway).
"""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook


@dataclass
class SavedTensors:
    """Bytes kept for backward: ``by_module[name]`` and one line per saved storage in ``items``."""

    by_module: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    items: list[tuple[str, str, tuple[int, ...], int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_module.values())


def saved_tensor_bytes(
    model: nn.Module, *inputs, loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None, **autocast
) -> SavedTensors:
    """Run ``model(*inputs)`` (training graph) and count what autograd saves, per module.

    ``autocast``: keyword arguments of :class:`torch.autocast` (e.g. ``device_type="cpu",
    dtype=torch.bfloat16``), or none for full precision. With ``loss_fn`` the loss's own
    saved tensors are counted too (under the name ``"<loss>"``).
    """
    result = SavedTensors()
    seen: set[int] = set()
    stack: list[str] = [""]
    names = {m: name for name, m in model.named_modules()}

    def enter(module, args):
        stack.append(names.get(module, stack[-1]))

    def leave(module, args, output):
        if len(stack) > 1:
            stack.pop()

    def pack(t: torch.Tensor):
        if isinstance(t, nn.Parameter) or t.layout != torch.strided:
            return t
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and storage.nbytes() > 0:
            seen.add(key)
            result.by_module[stack[-1]] += storage.nbytes()
            result.items.append((stack[-1], str(t.dtype).replace("torch.", ""), tuple(t.shape), storage.nbytes()))
        return t

    # Global module hooks: per-module ones would change what a layer runs (fast paths skip
    # synapses that carry hooks); modules a fast path calls functionally count to their parent.
    handles = [register_module_forward_pre_hook(enter), register_module_forward_hook(leave)]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ctx = torch.autocast(**autocast) if autocast else torch.enable_grad()
            with ctx:
                out = model(*inputs)
                if loss_fn is not None:
                    stack.append("<loss>")
                    loss_fn(out)
    finally:
        for h in handles:
            h.remove()
    result.by_module = dict(result.by_module)
    return result


class LiveSavedTensors:
    """Bytes autograd holds for backward at each moment, and their peak, over a block of code::

        with LiveSavedTensors() as live:
            ...  # forward(s) and backward(s): a whole training step
        live.peak  # the most held at once

    Every storage saved by an autograd node counts once while any node still holds it; it stops
    counting when its graph is freed (after ``backward()``, or when the graph goes out of scope).
    Parameters are not counted. Unlike :func:`saved_tensor_bytes` (one forward, per module) this
    follows the live total through forward and backward passes, e.g. of online training.
    """

    def __init__(self):
        self.live = 0
        self.peak = 0
        self._holders: dict[int, int] = {}
        self._hooks = None

    def _release(self, key: int, nbytes: int) -> None:
        self._holders[key] -= 1
        if self._holders[key] == 0:
            del self._holders[key]
            self.live -= nbytes

    def _pack(self, t: torch.Tensor):
        if isinstance(t, nn.Parameter) or t.layout != torch.strided or t.untyped_storage().nbytes() == 0:
            return t
        storage = t.untyped_storage()
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if key not in self._holders:
            self._holders[key] = 0
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self._holders[key] += 1
        holder = _Held(t)
        weakref.finalize(holder, self._release, key, nbytes)
        return holder

    @staticmethod
    def _unpack(packed):
        return packed.tensor if isinstance(packed, _Held) else packed

    def __enter__(self) -> LiveSavedTensors:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class _Held:
    """A saved tensor as autograd keeps it while :class:`LiveSavedTensors` counts it."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
