"""The frozen data every layer shares: the facts detection found, and the plan made from them.

Detection (``buildtools.detect``) produces a :class:`Facts`; after that nothing
touches the machine until the runner. Every fact records ``source``: where it
came from, in words a user can check (``"PATH wrapper /usr/local/bin/nvcc,
resolved by nvcc -dryrun"``).

Arch strings use TORCH_CUDA_ARCH_LIST spelling: ``"9.0"``, ``"12.0a"``; a
``"+PTX"`` suffix only appears in plans, never in facts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Mapping, TypeVar


__all__ = [
    "Program",
    "NvccFacts",
    "TorchFacts",
    "PythonFacts",
    "CpuFacts",
    "MemoryFacts",
    "GpuFacts",
    "ClusterFacts",
    "LearnedRam",
    "Facts",
    "Override",
    "Decision",
    "DevicePlan",
    "Detected",
    "Launcher",
    "Plan",
    "GIB",
    "BUILD_TYPES",
]

T = TypeVar("T")
GIB = 1024**3
# CMake's standard build types, by canonical spelling; the presets have one configure preset each
# for the first three, and one for MinSizeRel only when it is the planned type.
BUILD_TYPES = ("Release", "RelWithDebInfo", "Debug", "MinSizeRel")


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
class LearnedRam:
    """RAM per compile job of one kind, learned from the peaks earlier builds measured
    (buildtools.cache.peaks); the planner's per-kind figure when the project does not set one."""

    kind: str  # "CXX" or "CUDA" (per nvcc thread: the heaviest of cicc, ptxas, cc1plus)
    gib: float  # the figure planned with: the percentile plus headroom, rounded up
    percentile_gib: float  # the measured percentile itself
    tus: int  # TUs measured (the latest compile of each)
    heaviest: str  # the source with the highest peak


@dataclass(frozen=True)
class ClusterFacts:
    """A distributed-compile cluster (sccache-dist), probed only when one is asked for."""

    scheduler: str  # the scheduler URL that was probed
    servers: int  # build servers registered with it (0 when not reachable)
    cpus: int  # their CPUs, together
    client_dir: Path  # where the client's config, log and toolchains live (outside the source tree)
    source: str  # how it was found: "sccache --dist-status via the client on port 42311"
    problem: str | None = None  # why it cannot be used (unreachable, wrong token, no server); None: usable


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
    # Whether the ccache found can cache nvcc (versions.CCACHE_NVCC_MIN); an older one is for C/C++ only.
    # None when no ccache was found.
    ccache_caches_nvcc: bool | None = None
    # The distributed-compile cluster, when one is asked for (buildtools.cache.dist); else None.
    cluster: ClusterFacts | None = None
    # RAM per job kind learned from earlier builds' measured peaks (buildtools.cache.peaks); () at first.
    learned_ram: tuple[LearnedRam, ...] = ()


# -- the plan: what the planner decided, each number with its reason --------------------------


@dataclass(frozen=True)
class Override(Generic[T]):
    """A value the user forced, and where it came from (a flag or an environment variable, as ``buildtools.settings.OVERRIDES`` names them)."""

    value: T
    source: str


@dataclass(frozen=True)
class Decision(Generic[T]):
    """One planned value with the reason a user can check, e.g.
    ``jobs=6: min(cores 12 / nvcc-threads 2, RAM 14.2 GiB / 2.0 GiB per job)``."""

    value: T
    reason: str
    overridden_by: str | None = None  # the flag/env var that forced it, if any


@dataclass(frozen=True)
class DevicePlan:
    archs: Decision[tuple[str, ...]] | None = None  # e.g. ("8.0", "9.0+PTX"); None: no device code
    threads: Decision[int] | None = None  # device compiler threads per job (NVCC_THREADS)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Detected:
    """What :meth:`Platform.detect` found: ``facts`` go to ``Facts.extra[platform.name]`` (None:
    nothing to add), ``notes`` to ``Facts.notes`` (why a tool is absent, which one was picked)."""

    facts: Any = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Launcher:
    """A compiler launcher (ccache/sccache) and what it wraps."""

    name: str
    path: Path
    languages: tuple[str, ...]  # CMake languages: ("C", "CXX", "CUDA")
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Everything the renderers need. ``cache_variables`` is what CMake is told, minus the
    build type and install prefix, which differ per entry point (see :meth:`cmake_defines`)."""

    source_dir: Path
    platform: Decision[str]  # "cuda" / "cpu"
    jobs: Decision[int]  # compile pool size, and the build's -j
    link_jobs: Decision[int]
    device_threads: Decision[int] | None  # NVCC_THREADS; None for a CPU plan
    threads_label: str | None  # "nvcc-threads"
    archs: Decision[tuple[str, ...]] | None  # TORCH_CUDA_ARCH_LIST entries; None for a CPU plan
    ram_per_job_gib: Decision[float]
    build_type: Decision[str]
    launcher: Decision[Launcher | None]
    cache_variables: Mapping[str, str]
    environment: Mapping[str, str]  # for the build (launcher settings)
    warnings: tuple[str, ...] = ()
    # Build-time values that must never be written (a shared cache's password): ``environment``
    # names each as $env{NAME}; the runners set them in the build's process environment only.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False, metadata={"secret": True})
    # The shared compiler cache (buildtools.cache.remote.RemoteCache) behind the local one, or None.
    remote_cache: Decision[Any] = field(default_factory=lambda: Decision(None, "not asked for"))
    # Distributed compile (buildtools.cache.dist.DistPlan), or None; never holds the token.
    distributed: Decision[Any] = field(default_factory=lambda: Decision(None, "not asked for"))
    # Kind -> GiB per job planned, for the kinds a build measures (buildtools.cache.peaks): a build
    # replans when a measured figure rises above these.
    learnable_ram: Mapping[str, float] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.platform.value == "cuda"

    def cmake_defines(self, *, build_type: str | None = None, install_prefix: str | None = None) -> dict[str, str]:
        """Flat ``-D`` values for any entry point (pip backend, ``buildtools build``)."""
        defines = dict(self.cache_variables)
        defines["CMAKE_BUILD_TYPE"] = build_type or self.build_type.value
        if install_prefix is not None:
            defines["CMAKE_INSTALL_PREFIX"] = install_prefix
        return defines

    def numbers(self) -> list[tuple[str, Decision[Any]]]:
        """(label, decision) for every planned value, in display order."""
        rows: list[tuple[str, Decision[Any]]] = [("platform", self.platform), ("jobs", self.jobs),
                                                  ("link-jobs", self.link_jobs)]
        if self.device_threads is not None:
            rows.append((self.threads_label or "device-threads", self.device_threads))
        rows.append(("ram-per-job", self.ram_per_job_gib))
        if self.archs is not None:
            rows.append(("archs", self.archs))
        rows += [("build-type", self.build_type), ("launcher", self.launcher), ("remote-cache", self.remote_cache),
                 ("distributed", self.distributed)]
        return rows

    def shown(self) -> list[tuple[str, str, Decision[Any]]]:
        """(label, value as text, decision) for every planned value: the one spelling of each."""
        return [(label, _shown(label, decision.value), decision) for label, decision in self.numbers()]


def _shown(label: str, value: Any) -> str:
    if label == "archs":
        return ";".join(value)
    if label == "launcher":
        return value.name if value is not None else "none"
    if label in ("remote-cache", "distributed"):
        return str(value) if value is not None else "none"  # str(): URL (password masked) and mode
    if label == "ram-per-job":
        return f"{value:.1f} GiB"
    return str(value)
