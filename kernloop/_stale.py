"""Is this source tree's build older than its sources? Checked at ``import kernloop``.

``python -m buildtools build`` writes ``.build-stamp.json`` next to the modules it installs: the
mtime of every file and directory under ``csrc/`` and ``cmake/``, of ``CMakeLists.txt`` and the
presets, as the build began, and the torch it was built against. Here those entries are
stat'ed again (no walk, no subprocess; well under a millisecond for this tree). An installed
wheel has no stamp, and a stamp whose source dir is not this package's parent is ignored, so
only a source tree is ever checked. The same rules as ``buildtools/run/stamp.py``.

``KERNLOOP_REBUILD_ON_IMPORT=1`` runs the incremental build first (once per process; it takes
the build dir's lock; its output goes to stderr) instead of warning; a failed build is an
ImportError with the first compiler error.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

__all__ = ["STAMP_NAME", "REBUILD_ENV", "stale_reason", "check"]

STAMP_NAME = ".build-stamp.json"
REBUILD_ENV = "KERNLOOP_REBUILD_ON_IMPORT"
_state = {"warned": False, "rebuilt": False}


def _stamp(package_dir: str) -> dict | None:
    try:
        with open(os.path.join(package_dir, STAMP_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != 1:
        return None
    if os.path.abspath(os.path.dirname(os.path.abspath(package_dir))) != os.path.abspath(str(data.get("source_dir"))):
        return None  # a copied or installed package: not the tree the stamp describes
    return data


def stale_reason(package_dir: str, torch_version: str | None) -> str | None:
    """Why the built modules are older than their sources; None when they are not (or no stamp)."""
    data = _stamp(package_dir)
    if data is None:
        return None
    for entry in data.get("modules") or []:
        name, mtime, size = entry
        try:
            st = os.stat(os.path.join(package_dir, name))
        except OSError:
            return None
        if (st.st_mtime_ns, st.st_size) != (mtime, size):
            return None  # installed by something else since: the stamp does not describe it
    source_dir = data["source_dir"]
    for rel, mtime in data.get("inputs") or []:
        try:
            now = os.stat(os.path.join(source_dir, rel)).st_mtime_ns
        except OSError:
            return f"{rel} was removed after the build"
        if now != mtime:
            return f"{rel} changed after the build"
    built = data.get("torch")
    if torch_version is not None and built not in (None, torch_version):
        return f"it was built against torch {built}, this is torch {torch_version}"
    return None


def _rebuild(source_dir: str) -> None:
    """``python -m buildtools build`` in ``source_dir``; its progress on stderr."""
    env = dict(os.environ)
    env.pop(REBUILD_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join([source_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    argv = [sys.executable, "-m", "buildtools", "build", "--source-dir", source_dir, "--no-progress", "--json"]
    proc = subprocess.run(argv, cwd=source_dir, env=env, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if proc.returncode == 0:
        return
    failure = None
    try:
        failure = (json.loads(proc.stdout) or {}).get("failure")
    except ValueError:
        pass
    first = (failure or f"python -m buildtools build exited {proc.returncode}").splitlines()[0]
    raise ImportError(f"kernloop: rebuilding on import ({REBUILD_ENV}=1) failed: {first.removeprefix('error: ')}",
                      name="kernloop")


def check(package_dir: str, torch_version: str | None) -> None:
    """Warn once (stderr) when the build is stale; with KERNLOOP_REBUILD_ON_IMPORT=1 rebuild instead."""
    if _state["rebuilt"]:
        return
    reason = stale_reason(package_dir, torch_version)
    if reason is None:
        return
    data = _stamp(package_dir) or {}
    command = data.get("command") or "python -m buildtools build"
    if os.environ.get(REBUILD_ENV) == "1":
        _state["rebuilt"] = True
        print(f"kernloop: {reason}; rebuilding ({command})", file=sys.stderr, flush=True)
        _rebuild(str(data["source_dir"]))
        return
    if not _state["warned"]:
        _state["warned"] = True
        print(f"kernloop: the compiled modules are stale: {reason}. Rebuild with: {command} "
              f"(in {data['source_dir']}), or set {REBUILD_ENV}=1 to rebuild on import", file=sys.stderr, flush=True)
