"""A build with few dirty TUs is an edit, and runs as one: decided from what ``ninja -n`` would
compile, for this run only (nothing in build.ninja or the presets changes).

- nvcc ``--threads`` up to the cores the few TUs leave idle (``buildtools.cache.nvcc_threads``);
- ccache's depend mode when at most one TU per core is left in a build dir ninja has built in
  before: no preprocessor pass on a miss (``buildtools.cache.launcher.depend_mode_env``). A first
  build keeps ccache's preprocessed-mode fallback: its hits may come from another build dir.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from buildtools.cache import launcher as ccache
from buildtools.cache import nvcc_threads
from buildtools.run import noop
from buildtools.util import proc

__all__ = ["run_env"]


def run_env(cache_vars: Mapping[str, str], target: str, build_dir: Path, env: Mapping[str, str],
            unchanged: bool) -> tuple[dict[str, str], list[str]]:
    """(the environment to add for this run, its summary steps) -- nothing unless sources changed
    since the last build and a ccache launcher or the nvcc wrapper is configured."""
    cxx = ccache.launcher_kind(cache_vars.get("CMAKE_CXX_COMPILER_LAUNCHER"))
    planned = cache_vars.get("NVCC_THREADS", "")
    # sccache cannot leave --threads out of its key: it keeps the planned value.
    threads_apply = (bool(cache_vars.get("KERNLOOP_NVCC_WRAPPER")) and planned.isdigit()
                     and ccache.launcher_kind(cache_vars.get("CMAKE_CUDA_COMPILER_LAUNCHER")) != "sccache")
    if unchanged or not (threads_apply or cxx == "ccache"):
        return {}, []
    counts = _pending(cache_vars, target, build_dir, env)
    if counts is None:
        return {}, []
    from buildtools.detect.machine import detect_cpus

    cores = detect_cpus().usable
    out: dict[str, str] = {}
    steps: list[str] = []
    threads = nvcc_threads.threads_for_run(counts[0], counts[1], cores, int(planned)) if threads_apply else None
    if threads is not None:
        out[nvcc_threads.THREADS_ENV] = str(threads)
        steps.append(f"nvcc-threads: up to {threads} for this build ({counts[0]} CUDA of {counts[1]} TUs to compile "
                     f"on {cores} cores; planned {planned})")
    built_before = (build_dir / ".ninja_log").is_file()
    depend = ccache.depend_mode_env(cxx, counts[1], cores, env) if built_before else {}
    if depend:
        out.update(depend)
        steps.append(f"ccache: depend mode for this build ({counts[1]} {'TU' if counts[1] == 1 else 'TUs'} "
                     f"to compile on {cores} cores): no preprocessor pass on a miss; CCACHE_NODEPEND=1 keeps it off")
    return out, steps


def _pending(cache_vars: Mapping[str, str], target: str, build_dir: Path,
             env: Mapping[str, str]) -> tuple[int, int] | None:
    """(CUDA TUs, all TUs) ninja would compile; the fast path's dry run of this process when it
    still holds."""
    text = noop.dry_run_output(build_dir) if target == "all" else None
    if text is None:
        argv = [cache_vars.get("CMAKE_MAKE_PROGRAM") or "ninja", "-C", str(build_dir), "-n", target]
        res = proc.try_run(argv, env={k: v for k, v in env.items() if k != "NINJA_STATUS"}, timeout=120)
        if res is None or not res.ok:
            return None
        text = res.stdout
    return nvcc_threads.pending_compiles(text.splitlines())
