"""Small helpers shared by the detectors: PATH lookups, version parsing, probing."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from buildtools.util import proc

__all__ = [
    "PROBE_TIMEOUT_S",
    "path_entries",
    "which_all",
    "is_executable_file",
    "first_line",
    "probe",
]

# A probe that takes longer than this is broken (a hung wrapper script), not slow.
PROBE_TIMEOUT_S = 30.0

def path_entries(env: Mapping[str, str]) -> list[Path]:
    return [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p]


def is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def which_all(name: str, env: Mapping[str, str]) -> list[Path]:
    """Every ``name`` on env's PATH, in PATH order (``shutil.which`` stops at the first)."""
    found: list[Path] = []
    for entry in path_entries(env):
        candidate = entry / name
        if is_executable_file(candidate) and candidate not in found:
            found.append(candidate)
    return found



def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def probe(argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None) -> proc.Result | None:
    """Run a probe; None when the program cannot be started at all."""
    return proc.try_run(argv, env=env, timeout=PROBE_TIMEOUT_S)
