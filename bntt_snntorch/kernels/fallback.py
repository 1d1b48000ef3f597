"""The one fallback rule of the kernel paths: an error that means "this backend cannot compile or
launch here" falls back, once, to the next path, with one warning; any other error is a bug and
propagates (:mod:`.plan` states the rule and re-exports these names)."""

from __future__ import annotations

import warnings

from .backends import BLOCK_BACKENDS
from .c_build import CBuildError

#: Paths that failed in this process: path -> the error, in words.
FALLBACKS: dict[str, str] = {}
#: The path each fallible path falls back to: the Triton scan's, the C pooling's and each fused-block backend's own.
FALLBACK_PATH = {
    "triton": "torch",
    "pool-c": "pool-torch",
    **{name: backend.fallback for name, backend in BLOCK_BACKENDS.items() if backend.fallback},
}


def fallback_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "this backend cannot compile or launch here": ImportError (no
    Triton), :class:`CBuildError` (no C compiler for :mod:`.c_bntt`), Dynamo's ``BackendCompilerFailed``,
    TorchInductor's ``InductorError``, ``CppCompileError``, ``InvalidCxxCompiler``, ``TritonMissing``,
    ``GPUTooOldForTriton`` (Triton's kernels go through them), and Triton's ``CompilationError``, ``PTXASError``
    and ``OutOfResources`` (those of them this install has)."""
    import torch._dynamo.exc as dynamo_exc
    import torch._inductor.exc as inductor_exc

    errors = [ImportError, CBuildError, dynamo_exc.BackendCompilerFailed]
    for name in ("InductorError", "CppCompileError", "InvalidCxxCompiler", "TritonMissing", "GPUTooOldForTriton"):
        errors += [getattr(inductor_exc, name)] if hasattr(inductor_exc, name) else []
    try:
        from triton.compiler.errors import CompilationError
        from triton.runtime import errors as triton_runtime

        errors += [CompilationError, triton_runtime.OutOfResources]
        errors += [triton_runtime.PTXASError] if hasattr(triton_runtime, "PTXASError") else []
    except ImportError:
        pass
    return tuple(errors)


def layer_label(layer) -> str:
    """A layer's name in a warning: its class and the shape of its first parameter (the synapse's); a
    string is already a name."""
    if layer is None or isinstance(layer, str):
        return layer or "a layer"
    weight = next(layer.parameters(), None)
    return type(layer).__name__ + ("" if weight is None else f" {tuple(weight.shape)}")


def record_failure(path: str, err: BaseException, layer=None, warn: bool = True) -> str:
    """Remember that ``path`` cannot run here (one warning, naming the layer; none with ``warn=False``, for
    a path auto only tried); returns the path to take instead. Later plans take that path and say why."""
    fallback = FALLBACK_PATH[path]
    if path not in FALLBACKS:
        message = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"  # one line
        FALLBACKS[path] = message
        if warn:
            warnings.warn(
                f"{layer_label(layer)}: the {path} kernels cannot run here ({message}); using {fallback} "
                "instead (same results). Set BNTT_KERNELS=eager to skip the attempt; "
                "bntt_snntorch.kernels.explain(model, x_seq) shows every layer's path.",
                stacklevel=4,
            )
    return fallback


def clear_fallbacks() -> None:
    """Forget the recorded failures: the next plans try every path again."""
    FALLBACKS.clear()


def attempt(layer, path: str, run, fall_back: bool = True, warn: bool = True):
    """``(run(path), path)``; where ``path`` can fall back and ``run`` raises one of
    :func:`fallback_errors`, the failure is recorded (:func:`record_failure`, with its warning unless ``warn`` is
    False) and the result is ``(run(fallback), fallback)``. Any other exception propagates, and so does every one
    when ``fall_back`` is False (a backend the user forced)."""
    if path not in FALLBACK_PATH or not fall_back:
        return run(path), path
    try:
        return run(path), path
    except fallback_errors() as err:
        fallback = record_failure(path, err, layer, warn)
        return run(fallback), fallback
