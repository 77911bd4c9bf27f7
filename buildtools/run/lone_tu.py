"""A lone dirty TU gets the machine: nvcc ``--threads`` for this run when only a few TUs are dirty
(see ``buildtools.cache.nvcc_threads``), decided from what ``ninja -n`` would compile."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from buildtools.cache import launcher as ccache
from buildtools.cache import nvcc_threads
from buildtools.util import proc

__all__ = ["device_threads"]


def device_threads(cache_vars: Mapping[str, str], target: str, build_dir: Path, env: Mapping[str, str],
                   unchanged: bool) -> tuple[dict[str, str], str | None]:
    """(the launcher's environment for this run, the summary step) -- nothing unless sources changed
    since the last build, the nvcc wrapper is configured, and the launcher leaves --threads out of
    its key."""
    planned = cache_vars.get("NVCC_THREADS", "")
    if unchanged or not cache_vars.get("KERNLOOP_NVCC_WRAPPER") or not planned.isdigit():
        return {}, None
    if ccache.launcher_kind(cache_vars.get("CMAKE_CUDA_COMPILER_LAUNCHER")) == "sccache":
        return {}, None  # sccache cannot leave --threads out of its key: keep the planned value
    argv = [cache_vars.get("CMAKE_MAKE_PROGRAM") or "ninja", "-C", str(build_dir), "-n", target]
    res = proc.try_run(argv, env={k: v for k, v in env.items() if k != "NINJA_STATUS"}, timeout=120)
    counts = nvcc_threads.pending_compiles(res.stdout.splitlines()) if res is not None and res.ok else None
    if counts is None:
        return {}, None
    from buildtools.detect.machine import detect_cpus

    cores = detect_cpus().usable
    threads = nvcc_threads.threads_for_run(counts[0], counts[1], cores, int(planned))
    if threads is None:
        return {}, None
    return ({nvcc_threads.THREADS_ENV: str(threads)},
            f"nvcc-threads: up to {threads} for this build ({counts[0]} CUDA of {counts[1]} TUs to compile on "
            f"{cores} cores; planned {planned})")
