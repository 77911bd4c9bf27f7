"""Facts about the machine and toolchain, as frozen data.

Detection (``buildtools.detect``) produces a :class:`Facts`; after that nothing
touches the machine until the runner. Every fact records ``source``: where it
came from, in words a user can check (``"PATH wrapper /usr/local/bin/nvcc,
resolved by nvcc -dryrun"``).

Arch strings use TORCH_CUDA_ARCH_LIST spelling: ``"9.0"``, ``"12.0a"``; a
``"+PTX"`` suffix only appears in plans, never in facts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "Program",
    "NvccFacts",
    "TorchFacts",
    "PythonFacts",
    "CpuFacts",
    "MemoryFacts",
    "GpuFacts",
    "Facts",
    "to_jsonable",
]


@dataclass(frozen=True)
class Program:
    """A helper program that was found (ninja, cmake, ccache, sccache, hipcc...)."""

    name: str
    path: Path
    version: str | None
    source: str


@dataclass(frozen=True)
class NvccFacts:
    path: Path  # the real nvcc binary, symlinks and wrapper scripts resolved
    found_as: Path  # what was found first (may be a wrapper or symlink)
    root: Path  # the real CUDA toolkit root (nvcc -dryrun's TOP=)
    version: str  # "13.0"
    archs: tuple[str, ...]  # supported by this nvcc, e.g. ("7.5", "8.0", ..., "12.1")
    source: str


@dataclass(frozen=True)
class TorchFacts:
    version: str  # "2.14.1+cu130"
    cuda: str | None  # "13.0", or None for a CPU/ROCm build
    hip: str | None  # ROCm/HIP version, or None
    root: Path  # the installed torch package directory
    cmake_prefix: Path  # torch.utils.cmake_prefix_path
    cxx11_abi: bool | None
    source: str


@dataclass(frozen=True)
class PythonFacts:
    executable: Path
    version: str  # "3.11.7"
    source: str


@dataclass(frozen=True)
class CpuFacts:
    usable: int  # CPU affinity ∩ cgroup quota, >= 1
    source: str


@dataclass(frozen=True)
class MemoryFacts:
    available_bytes: int  # psutil available ∩ (cgroup limit - usage)
    source: str


@dataclass(frozen=True)
class GpuFacts:
    archs: tuple[str, ...]  # local GPUs' compute capabilities, e.g. ("9.0",); () if none
    names: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Facts:
    source_dir: Path
    python: PythonFacts
    torch: TorchFacts | None
    nvcc: NvccFacts | None
    cuda_extra_includes: tuple[Path, ...]  # pip-installed CUDA headers (nvidia/*/include)
    cpus: CpuFacts
    memory: MemoryFacts
    gpus: GpuFacts
    cmake: Program | None
    ninja: Program | None
    ccache: Program | None
    sccache: Program | None
    # Facts contributed by platform plugins, keyed by platform name.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Human-readable findings for --print-plan and error messages: why nvcc or
    # torch is absent, which candidates were skipped and why.
    notes: tuple[str, ...] = ()
    # ccache caches nvcc only from 4.12.3 on; an older ccache is for C/C++ only.
    # None when no ccache was found.
    ccache_caches_nvcc: bool | None = None

    @property
    def cuda_build(self) -> bool:
        """A CUDA build is possible: nvcc found and torch built with CUDA."""
        return self.nvcc is not None and self.torch is not None and self.torch.cuda is not None


def to_jsonable(obj: Any) -> Any:
    """Dataclasses/Paths/tuples -> plain JSON types (for --json output)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj
