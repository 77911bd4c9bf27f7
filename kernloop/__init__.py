"""kernloop: CUDA/C++ kernels for torch.

Importing the package loads the compiled extension modules ``kernloop._C`` and
``kernloop._moe_C``, which register their ops with torch (``torch.ops._C.*``,
``torch.ops._moe_C.*``). The functions here are thin typed wrappers around those
ops that allocate the outputs.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch  # noqa: F401  -- loads libc10/libtorch, which the extension modules link against

__all__ = [
    "BUILD_COMMANDS",
    "available_ops",
    "cuda_enabled",
    "rms_norm",
    "fused_add_rms_norm",
    "silu_and_mul",
    "rotary_embedding",
    "topk_softmax",
    "moe_align_block_size",
    "moe_sum",
]

BUILD_COMMANDS = (
    "python tools/generate_presets.py --force-overwrite && cmake --preset release && "
    "cmake --build --preset release --target install (or: bash tools/setup.sh)"
)

# extension module -> the ops it registers, in registration order
_OPS: dict[str, tuple[str, ...]] = {
    "_C": ("rms_norm", "fused_add_rms_norm", "silu_and_mul", "rotary_embedding"),
    "_moe_C": ("topk_softmax", "moe_align_block_size", "moe_sum"),
}


def _load(name: str) -> ModuleType:
    qualified = f"{__name__}.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name != qualified:
            raise
        raise ImportError(
            f"kernloop's compiled ops are not built ({name}.abi3.so is missing from {__path__[0]}); "
            f"build them from the repository root with: {BUILD_COMMANDS}",
            name=qualified,
        ) from None
    except ImportError as exc:  # present but does not load: stale build, other torch, ...
        raise ImportError(
            f"kernloop's compiled module {name} failed to load ({exc}); rebuild it with: {BUILD_COMMANDS}",
            name=qualified,
        ) from exc


# In a source tree: warn (or rebuild, KERNLOOP_REBUILD_ON_IMPORT=1) when csrc/ changed after the build.
from . import _stale  # noqa: E402

_stale.check(__path__[0], torch.__version__)
_modules = {name: _load(name) for name in _OPS}


def available_ops() -> tuple[str, ...]:
    """Names of the ops registered by the loaded extension modules."""
    return tuple(
        op for ns, ops in _OPS.items() for op in ops if hasattr(getattr(torch.ops, ns), op)
    )


def cuda_enabled() -> bool:
    """Whether the extension modules were built with their CUDA kernels."""
    return all(bool(module.WITH_CUDA) for module in _modules.values())


from .ops import (  # noqa: E402  -- the wrappers need the ops registered above
    fused_add_rms_norm,
    moe_align_block_size,
    moe_sum,
    rms_norm,
    rotary_embedding,
    silu_and_mul,
    topk_softmax,
)
