"""The build stamp: what an installed module was built from, for a check at import.

After a build installs into a source tree, ``<package>/.build-stamp.json`` is written next to
the installed modules. It records the mtime of every file and directory the build reads
(``csrc/``, ``cmake/``, ``CMakeLists.txt``, the presets) as they were when the build began,
the torch version it was built against, and the stat of each installed module. ``import
kernloop`` (``kernloop/_stale.py``, stdlib only) re-stats that list -- no walk, no subprocess
-- and warns when something changed since; ``doctor`` asks :func:`stale_reason`, the same
rules. The stamp is ignored by git and excluded from wheels, and a stamp whose source dir is
not the package's parent (a copied or installed package) is ignored.

The format (``format`` 1)::

    {"format": 1, "source_dir": "/src/kernloop", "command": "python -m buildtools build",
     "torch": "2.14.1+cu130", "inputs": [["csrc/ops.cpp", 1796158654889076124], ...],
     "modules": [["_C.abi3.so", <st_mtime_ns>, <st_size>], ...]}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = ["STAMP_NAME", "WATCHED", "COMMAND", "snapshot", "write_stamps", "stale_reason"]

STAMP_NAME = ".build-stamp.json"
WATCHED = ("csrc", "cmake", "CMakeLists.txt", "CMakePresets.json", "CMakeUserPresets.json")
COMMAND = "python -m buildtools build"
_FORMAT = 1


def snapshot(source_dir: Path) -> list[list[Any]]:
    """``[[relative path, st_mtime_ns], ...]`` of the watched files and directories (a directory's
    own mtime too: a file added or removed in it changes that). Absent ones are left out, so one
    that appears is noticed only by its directory -- the source dir itself is not watched, since
    every build writes into it."""
    out: list[list[Any]] = []

    def visit(path: str, rel: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        out.append([rel, st.st_mtime_ns])
        if os.path.isdir(path):
            with os.scandir(path) as it:
                for entry in sorted(it, key=lambda e: e.name):
                    if entry.name.startswith(".") or entry.name == "__pycache__":
                        continue
                    visit(entry.path, f"{rel}/{entry.name}")

    for name in WATCHED:
        visit(os.path.join(source_dir, name), name)
    return out


def _module_stat(path: Path) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [path.name, st.st_mtime_ns, st.st_size]


def write_stamps(source_dir: Path, installed: Iterable[Path], inputs: list[list[Any]], torch: str | None) -> None:
    """A stamp in every directory of the source tree that received an installed file (a file
    installed elsewhere -- a custom prefix -- gets none: no import from there can rebuild)."""
    by_dir: dict[Path, list[Path]] = {}
    for path in installed:
        if Path(os.path.abspath(path)).parent.parent == Path(os.path.abspath(source_dir)):
            by_dir.setdefault(Path(path).parent, []).append(Path(path))
    for directory, files in by_dir.items():
        data = {"format": _FORMAT, "source_dir": str(source_dir), "command": COMMAND, "torch": torch,
                "inputs": inputs, "modules": [m for m in (_module_stat(f) for f in sorted(files)) if m]}
        text = json.dumps(data, separators=(",", ":"))
        target = directory / STAMP_NAME
        try:
            if target.read_text() == text:
                continue
        except OSError:
            pass
        tmp = directory / f"{STAMP_NAME}.{os.getpid()}.tmp"
        try:
            tmp.write_text(text)
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)  # the package dir took the modules; a stamp is only a hint


def stale_reason(package_dir: Path, torch_version: str | None) -> str | None:
    """Why the modules in ``package_dir`` are older than their sources (None: they are not, or
    there is no stamp to tell). The same rules as ``kernloop/_stale.py``."""
    try:
        data = json.loads((package_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
        return None
    source_dir = Path(str(data.get("source_dir")))
    if os.path.abspath(package_dir.parent) != os.path.abspath(source_dir):
        return None
    for name, mtime, size in data.get("modules") or []:
        if _module_stat(package_dir / name) != [name, mtime, size]:
            return None  # installed by something else since: the stamp does not describe it
    for rel, mtime in data.get("inputs") or []:
        try:
            now = os.stat(source_dir / rel).st_mtime_ns
        except OSError:
            return f"{rel} was removed after the build"
        if now != mtime:
            return f"{rel} changed after the build"
    if torch_version is not None and data.get("torch") not in (None, torch_version):
        return f"it was built against torch {data['torch']}, this is torch {torch_version}"
    return None
