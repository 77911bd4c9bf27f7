"""The no-op fast path of ``python -m buildtools build``: the standard library only, no plan.

A build with nothing to do spends most of its time importing the planner (~70 ms of ~130 here,
against ~90 ms for a plain ``cmake --build --preset release --target install``). So every
successful build ends by writing ``<build dir>/.kernloop-noop.json`` (:func:`record`): the stat
key of everything a no-op build would check -- the recorded facts and the files they came from,
pyproject.toml, the presets files, CMakeCache.txt, build.ninja, the installed modules, the peaks
log, buildtools' own code --, ``.ninja_log``'s size (it may grow by CMake utility runs only, such
as a plain ``cmake --build --target install`` with nothing to build), a digest of the environment
variables detection and the planner read, and what a no-op build prints. Each build removes it
first (:func:`forget`), so a build that fails or is stopped leaves none.

The next plain ``build`` (``--json``, ``--no-progress`` and ``--source-dir`` allowed; any other
flag plans) checks that key, takes the build lock without waiting, and asks ninja whether
anything is out of date (``ninja -n``). When nothing is, it prints the recorded summary and
exits. Anything else -- a changed file or variable, work for ninja, a held lock, a damaged record
-- returns None and the full path runs and checks everything itself. The fast path never
builds, installs or writes. What ninja said stays in this process (:func:`dry_run_output`), so
the full path of an edit does not load the graph for the same dry run again.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from buildtools.util.stamp import env_digest, key_changes

__all__ = ["RECORD_NAME", "UTILITY_SUFFIX", "record", "forget", "fast_build", "dry_run_output"]

RECORD_NAME = ".kernloop-noop.json"
_FORMAT = 2
_PROJECT_ROOT = Path(__file__).resolve().parents[2]  # as buildtools.cli.main's default --source-dir
_BUILD_DIR = "cmake-build-release"  # buildtools.cmake.presets.build_dir_name("release"); checked by record()
_ALLOWED = {"--json", "--no-progress"}
_NO_WORK = "ninja: no work to do."
# CMake's utility targets' outputs in ninja's log (install.util: a plain --target install run):
# they build nothing that is installed.
UTILITY_SUFFIX = ".util"
_NINJA_LOG = ".ninja_log"
_GRAPH = ("build.ninja", _NINJA_LOG)  # what a dry run read; either changed: ask ninja again
_last_dry_run: tuple[str, tuple[tuple[int, int], ...], str] | None = None  # (build dir, _GRAPH stats, stdout)


def forget(build_dir: Path) -> None:
    """Drop the record: a build has begun (call it with the build lock held)."""
    try:
        os.unlink(Path(build_dir) / RECORD_NAME)
    except OSError:
        pass


def record(build_dir: Path, *, source_dir: Path, key: list[list[Any]], env: Mapping[str, str],
           env_names: Sequence[str], env_prefixes: Sequence[str], ninja: str, lock: str,
           summary: str, summary_json: Mapping[str, Any]) -> None:
    """Write the record of a successful build (best effort: without it the next build plans)."""
    log = Path(build_dir) / _NINJA_LOG
    try:
        st = os.stat(log)
    except OSError:
        return
    data = {"format": _FORMAT, "source_dir": str(source_dir), "key": key, "env_names": list(env_names),
            "env_prefixes": list(env_prefixes), "env": _digest(env, env_names, env_prefixes),
            "ninja_log": [str(log), st.st_ino, st.st_size],
            "ninja": ninja, "lock": lock, "summary": summary, "json": dict(summary_json)}
    path = Path(build_dir) / RECORD_NAME
    tmp = path.with_name(f".{RECORD_NAME}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def _digest(env: Mapping[str, str], names: Sequence[str], prefixes: Sequence[str]) -> str:
    return env_digest({**env, "<python>": sys.executable}, names, prefixes)


def _source_dir(argv: Sequence[str]) -> Path | None:
    """The source dir of a ``build`` the fast path may answer; None for any other command line."""
    if not argv or argv[0] != "build":
        return None
    source: str | None = None
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg in _ALLOWED:
            continue
        if arg == "--source-dir" and rest:
            source = rest.pop(0)
        elif arg.startswith("--source-dir="):
            source = arg.partition("=")[2]
        else:
            return None
    return Path(os.path.abspath(source or _PROJECT_ROOT))


def _log_grew_by_utilities(path: str, ino: int, size: int) -> bool:
    """``.ninja_log`` is the one recorded, or ninja only appended CMake utility targets' runs to it
    (``CMakeFiles/install.util``: a plain ``cmake --build --target install`` with nothing to
    build). A compile or a link appends its output; a recompacted log is a new file."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_ino != ino or st.st_size < size:
                return False
            fh.seek(size)
            appended = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return False
    fields = [line.split("\t") for line in appended if line.strip()]
    return all(len(f) >= 5 and f[3].endswith(UTILITY_SUFFIX) for f in fields)


def _graph_stats(build_dir: Path) -> tuple[tuple[int, int], ...] | None:
    try:
        return tuple((st.st_mtime_ns, st.st_size) for st in (os.stat(build_dir / name) for name in _GRAPH))
    except OSError:
        return None


def dry_run_output(build_dir: Path) -> str | None:
    """``ninja -n all``'s output from this process's fast path in ``build_dir``, while the graph
    and log it read are unchanged; else None."""
    if _last_dry_run is None or _last_dry_run[0] != os.path.realpath(build_dir):
        return None
    return _last_dry_run[2] if _graph_stats(build_dir) == _last_dry_run[1] else None


def _ninja_idle(ninja: str, build_dir: Path, env: Mapping[str, str]) -> bool:
    import subprocess  # here: only a record that still matches gets this far

    global _last_dry_run
    stats = _graph_stats(build_dir)
    try:  # ninja's own status format: "[1/3] Building ..." is what the full path reads
        done = subprocess.run([ninja, "-C", str(build_dir), "-n", "all"], capture_output=True, text=True,
                              env={k: v for k, v in env.items() if k != "NINJA_STATUS"}, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0:
        return False
    if stats is not None and stats == _graph_stats(build_dir):
        _last_dry_run = (os.path.realpath(build_dir), stats, done.stdout)
    return done.stdout.rstrip().endswith(_NO_WORK) and "\n[" not in done.stdout


def fast_build(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int | None:
    """0 after printing a no-op build's summary, or None: take the full path."""
    started = time.monotonic()
    env = os.environ if env is None else env
    source_dir = _source_dir(argv)
    if source_dir is None:
        return None
    build_dir = source_dir / _BUILD_DIR
    try:
        data = json.loads((build_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    try:
        if data["format"] != _FORMAT or data["source_dir"] != str(source_dir):
            return None
        if data["env"] != _digest(env, data["env_names"], data["env_prefixes"]) or key_changes(data["key"]) is not None:
            return None
        if not _log_grew_by_utilities(*data["ninja_log"]):
            return None
        import fcntl

        fd = os.open(data["lock"], os.O_RDWR)
    except (KeyError, TypeError, ValueError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another build holds it: the full path waits and says so
        os.close(fd)
        return None
    try:
        if not _ninja_idle(data["ninja"], build_dir, env):
            return None
        elapsed = time.monotonic() - started
        if "--json" in argv:
            print(json.dumps({**data["json"], "elapsed_s": round(elapsed, 3)}, indent=2))
        print(data["summary"].replace("{elapsed}", f"{elapsed:.1f}", 1), file=sys.stderr)
        return 0
    finally:
        os.close(fd)  # releases the lock
