"""What doctor looks at in the checkout and the build dir, beyond the modules: the presets files and
``[tool.buildtools]`` read as the build reads them, whether the tree and the build dir take a new file,
and whether the build tool CMake cached still runs.

Each reader never raises: whatever the files hold, doctor reports it as a finding.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from buildtools.errors import KernloopError
from buildtools.util import proc
from buildtools.util.os_errors import os_error_kind

__all__ = ["FileProblem", "Unwritable", "StaleProgram", "REGENERATE", "build_dir_for", "presets_problem",
           "config_problem", "unwritable", "stale_make_program"]

REGENERATE = "python -m buildtools presets --force-overwrite"
# What reading a file the user can edit may raise besides KernloopError (a parser's own limits).
_READ_ERRORS = (KernloopError, OSError, ValueError, TypeError, AttributeError, KeyError, RecursionError)


@dataclass(frozen=True)
class FileProblem:
    path: Path
    message: str
    fix: str


@dataclass(frozen=True)
class Unwritable:
    path: Path
    reason: str  # the OS's words: "Read-only file system"
    kind: str  # buildtools.util.os_errors.os_error_kind: "read-only-fs", "not-permitted", ...
    mount: Path | None = None  # the mount point it lies on (for a read-only filesystem)


@dataclass(frozen=True)
class StaleProgram:
    variable: str  # "CMAKE_MAKE_PROGRAM"
    path: str  # as CMake cached it
    why: str  # "no longer exists", "does not run (...)"


def build_dir_for(source_dir: Path, preset: str) -> Path:
    """The preset's build dir as the build resolves it, else the default one (never raises)."""
    from buildtools.cmake.presets import resolve_preset
    from buildtools.run.state import default_build_dir

    try:
        resolved = resolve_preset(source_dir, preset)
    except _READ_ERRORS:
        resolved = None
    return resolved.binary_dir if resolved is not None else default_build_dir(source_dir, preset)


def presets_problem(source_dir: Path, preset: str) -> FileProblem | None:
    """What is wrong with the presets files CMake reads (a UTF-8 BOM is fine, as for CMake)."""
    from buildtools.cmake.presets import FILE_NAME, PRESET_FILES, parse, resolve_preset

    def fix(path: Path, line: int | None = None) -> str:
        where = f" (line {line})" if line else ""
        if path.name == FILE_NAME:
            return f"fix {path}{where}, or regenerate it: {REGENERATE}"
        return f"fix {path}{where} (kernloop never writes it)"

    for name in PRESET_FILES:
        path = Path(source_dir) / name
        try:
            if not path.is_file():
                continue
            data = path.read_bytes()
        except OSError as exc:
            return FileProblem(path, f"cannot read {path}: {exc.strerror or exc}", f"make {path} readable")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return FileProblem(path, f"{path} is not UTF-8 text (byte {exc.start})", fix(path))
        try:
            parse(text)
        except RecursionError:
            return FileProblem(path, f"{path}: JSON nested too deeply", fix(path))
        except ValueError as exc:  # InvalidPresets, with the line where it can tell
            return FileProblem(path, f"{path}: {exc}", fix(path, getattr(exc, "line", None)))
    try:
        resolve_preset(Path(source_dir), preset)
    except KernloopError as exc:
        return FileProblem(Path(source_dir) / FILE_NAME, exc.message, exc.hint or fix(Path(source_dir) / FILE_NAME))
    except _READ_ERRORS as exc:
        path = Path(source_dir) / FILE_NAME
        return FileProblem(path, f"configure preset {preset!r} cannot be resolved: {type(exc).__name__}: {exc}", fix(path))
    return None


def config_problem(source_dir: Path) -> FileProblem | None:
    """What is wrong with ``[tool.buildtools]`` in pyproject.toml, read as every command reads it."""
    from buildtools.settings import load_config

    path = Path(source_dir) / "pyproject.toml"
    try:
        load_config(Path(source_dir))
    except KernloopError as exc:
        return FileProblem(path, exc.message, exc.hint or f"fix [tool.buildtools] in {path}")
    except _READ_ERRORS as exc:
        return FileProblem(path, f"{path}: cannot be read as TOML: {type(exc).__name__}: {exc}", f"fix {path}")
    return None


def _existing(path: Path) -> Path:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _mount_point(path: Path) -> Path | None:
    """The mount point ``path`` lies on, from /proc/self/mountinfo (bind mounts included)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best: str | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) >= len(best)):
            best = mount
    return Path(best) if best else None


def unwritable(dirs: Iterable[Path]) -> tuple[Unwritable, ...]:
    """The directories (or, for one not made yet, the nearest one that is) that refuse a new file.

    Tried for real: ``os.access`` says yes to root on a read-only mount or an immutable dir."""
    out: list[Unwritable] = []
    seen: set[Path] = set()
    for d in dirs:
        target = _existing(d)
        if target in seen or not target.is_dir():
            continue
        seen.add(target)
        try:
            fd, name = tempfile.mkstemp(dir=target, prefix=".kernloop-doctor-")
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            kind = os_error_kind(exc)
            out.append(Unwritable(target, exc.strerror or str(exc), kind, _mount_point(target) if kind == "read-only-fs" else None))
    return tuple(out)


def stale_make_program(cache: Mapping[str, str], env: Mapping[str, str] | None = None) -> StaleProgram | None:
    """The build tool the build dir was configured with, when it no longer exists or runs."""
    cached = (cache.get("CMAKE_MAKE_PROGRAM") or "").strip()
    if not cached or cached.endswith("-NOTFOUND"):
        return None
    path = cached if os.path.isabs(cached) else shutil.which(cached, path=(env or os.environ).get("PATH"))
    if path is None or not os.path.isfile(path):
        return StaleProgram("CMAKE_MAKE_PROGRAM", cached, "no longer exists")
    res = proc.try_run([path, "--version"], timeout=30)
    if res is None:
        return StaleProgram("CMAKE_MAKE_PROGRAM", cached, "cannot be run")
    if not res.ok:
        said = (res.stderr or res.stdout).strip().splitlines()
        return StaleProgram("CMAKE_MAKE_PROGRAM", cached, f"does not run ({said[0] if said else f'exit {res.returncode}'})")
    return None
