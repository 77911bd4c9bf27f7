"""What doctor looks at beyond the facts: the host compiler nvcc will use and the range its
``host_config.h`` accepts, the ``_C``/``_moe_C`` files on disk and which one ``import kernloop._C``
would load (asked of the target Python's own import system, without importing kernloop or torch),
whether the build dir is out of date (``ninja -n``) and what the next install would change (by content),
free disk; and through ``observe_tree``/``orphans``: the presets and ``[tool.buildtools]`` as the build
reads them, which directories refuse a new file, a cached build tool that is gone, a killed build's
processes still at work.
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

from buildtools.checks.observe_tree import FileProblem, StaleProgram, Unwritable
from buildtools.checks.orphans import LockView
from buildtools.model import Facts
from buildtools.run.stamp import stale_reason
from buildtools.util import proc
from buildtools.versions import version_tuple

__all__ = ["MODULES", "HostCompiler", "HostLimits", "ImportView", "Observations", "parse_host_limits", "observe"]

MODULES = ("_C", "_moe_C")


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
    built_not_installed: tuple[str, ...]  # what the next install would change: a module name, else the file
    free_bytes: int | None
    presets: FileProblem | None = None  # a presets file the build cannot read
    config: FileProblem | None = None  # [tool.buildtools] the build rejects
    unwritable: tuple[Unwritable, ...] = ()  # directories the build writes that refuse a new file
    make_program: StaleProgram | None = None  # the build tool the build dir was configured with, gone
    lock: LockView | None = None  # who builds in the build dir (None: no build dir yet)
    stale: str | None = None  # why kernloop/'s modules are older than their sources (the build stamp)


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


def _install_changes(facts: Facts, build_dir: Path, prefix: Path, env: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    """(what the next install would change, by module name or path; the directories it installs into)."""
    from buildtools.run.install import pending_install

    if facts.cmake is None or not (build_dir / "cmake_install.cmake").is_file():
        return (), ()
    view = pending_install(facts.cmake.path, build_dir, prefix, env=env)
    if view is None:
        return (), ()
    names = []
    for path in view.changed:
        module = next((m for m in MODULES if path.name.startswith(f"{m}.")), None)
        names.append(module or str(path))
    return tuple(dict.fromkeys(names)), tuple(dict.fromkeys(p.parent for p in view.targets))


def observe(facts: Facts, build_dir: Path, env: Mapping[str, str] | None = None, *, preset: str = "release") -> Observations:
    """Look at the machine and the checkout (the only part of doctor with side effects: it reads,
    and tries a temp file in each directory the build writes)."""
    from buildtools.checks import observe_tree as tree
    from buildtools.checks.orphans import observe_lock
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

    prefix = Path(cache.get("CMAKE_INSTALL_PREFIX") or source_dir)
    built_not_installed, install_dirs = _install_changes(facts, build_dir, prefix, env)
    package = [source_dir / "kernloop"] if (source_dir / "kernloop").is_dir() else []

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
        built_not_installed=built_not_installed,
        free_bytes=_free_bytes(build_dir),
        presets=tree.presets_problem(source_dir, preset),
        config=tree.config_problem(source_dir),
        unwritable=tree.unwritable([source_dir, *package, *install_dirs, build_dir]),
        make_program=tree.stale_make_program(cache, env),
        lock=observe_lock(build_dir),
        stale=stale_reason(source_dir / "kernloop", facts.torch.version if facts.torch else None),
    )
