"""``watch``: rebuild when a kernel source changes, then run the chosen tests. The loop in one terminal.

What is watched: ``csrc/`` and ``cmake/`` (recursively, with watchfiles) and the
top-level ``CMakeLists.txt``. Single files are polled by stat instead of watched:
editors save by writing a temp file and renaming it over the original, which
ends an inotify watch on the file itself (the first save would be the last one
seen). A change is reported once the tree has been quiet for ``step_ms``
(at most ``debounce_ms`` after the first event), so a save-all of ten files is
one rebuild. Changes made during a build or a test run are picked up right after.

Ctrl-C: the build and the tests run in their own sessions and receive the
interrupt from us (ninja removes the outputs of the commands it stops), the
install step renames files into place under a deferred SIGINT, and the build
dir's lock is released on the way out -- nothing is left half-written.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TextIO

from buildtools.util import proc
from buildtools.run.build import BuildOptions, run_build
from buildtools.run.result import BuildResult

__all__ = ["WatchOptions", "WATCHED", "watched", "ChangeFeed", "watch_loop", "describe_changes"]

WATCHED = ("csrc", "cmake", "CMakeLists.txt")
_POLL_MS = 400  # how often single files are stat-polled (and how long a quiet tree waits for them)


@dataclass(frozen=True)
class WatchOptions:
    source_dir: Path
    preset: str = "release"
    pytest_args: tuple[str, ...] = ()  # empty: rebuild only
    paths: tuple[str, ...] = WATCHED
    debounce_ms: int = 1600
    step_ms: int = 300
    initial: bool = True  # build (and test) once at start
    max_cycles: int | None = None  # stop after this many change-triggered cycles (tests)
    progress: bool | None = None


def watched(source_dir: Path, paths: Sequence[str] = WATCHED) -> tuple[list[Path], list[Path]]:
    """(directories to watch recursively, files to poll) that exist."""
    dirs, files = [], []
    for rel in paths:
        p = source_dir / rel
        if p.is_dir():
            dirs.append(p)
        elif p.is_file():
            files.append(p)
    return dirs, files


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ChangeFeed:
    """Changed paths under ``dirs`` (watched) and among ``files`` (stat-polled), one set per burst.

    Watching starts on ``__enter__``, before anything else runs, so a save made while
    the first build is still going is not lost.
    """

    def __init__(self, dirs: Sequence[Path], files: Sequence[Path], *, debounce_ms: int = 1600,
                 step_ms: int = 300, stop_event=None) -> None:  # fmt: skip
        self.dirs, self.files = list(dirs), list(files)
        self.debounce_ms, self.step_ms, self.stop_event = debounce_ms, step_ms, stop_event
        self._notify = None
        self._stamps: dict[Path, tuple[int, int, int] | None] = {}

    def __enter__(self) -> "ChangeFeed":
        from watchfiles import DefaultFilter
        from watchfiles.main import RustNotify

        self._filter = DefaultFilter()  # editor swap files, __pycache__, .git ...
        self._stamps = {f: _stamp(f) for f in self.files}
        if self.dirs:
            self._notify = RustNotify([str(d) for d in self.dirs], False, False, 300, True, False)
            self._notify.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._notify is not None:
            self._notify.__exit__(*exc)
            self._notify = None

    def _polled(self) -> set[Path]:
        changed = set()
        for f in self.files:
            now = _stamp(f)
            if now != self._stamps[f]:
                self._stamps[f] = now
                changed.add(f)
        return changed

    def __iter__(self) -> Iterator[set[Path]]:
        while self.stop_event is None or not self.stop_event.is_set():
            got: set[Path] = set()
            if self._notify is None:
                time.sleep(_POLL_MS / 1000)
            else:
                raw = self._notify.watch(self.debounce_ms, self.step_ms, _POLL_MS, self.stop_event)
                if raw == "signal":
                    raise KeyboardInterrupt
                if raw == "stop":
                    return
                if raw != "timeout":
                    from watchfiles import Change

                    got = {Path(p) for c, p in raw if self._filter(Change(c), p)}
            got |= self._polled()
            if got:
                yield got


def describe_changes(paths: set[Path], source_dir: Path) -> str:
    # an editor's temp file, renamed away by now, is not worth naming
    paths = {p for p in paths if p.exists()} or paths
    rel = sorted(str(p.relative_to(source_dir)) if p.is_relative_to(source_dir) else str(p) for p in paths)
    more = f" (+{len(rel) - 3} more)" if len(rel) > 3 else ""
    return ", ".join(rel[:3]) + more


def _one_line(result: BuildResult) -> str:
    tus = result.rebuilt_sources
    parts = [f"built in {result.elapsed_s:.1f} s", f"{len(tus)} TU{'s' if len(tus) != 1 else ''} rebuilt"]
    if tus:
        parts[-1] += f" ({', '.join(tus[:3])}{', ...' if len(tus) > 3 else ''})"
    if result.cache is not None and result.cache.lookups:
        parts.append(result.cache.describe())
    changed = [f.path.name for f in result.installed if f.changed]
    parts.append(f"installed {', '.join(changed)}" if changed else "modules unchanged")
    return "; ".join(parts)


def _cycle(options: WatchOptions, out: TextIO, build: Callable[..., BuildResult]) -> bool:
    result = build(BuildOptions(source_dir=options.source_dir, preset=options.preset, progress=options.progress), out=out)
    if not result.ok:
        out.write(result.summary() + "\n")
        out.flush()
        return False
    out.write(_one_line(result) + "\n")
    out.flush()
    if not options.pytest_args:
        return True
    argv = [sys.executable, "-m", "pytest", *options.pytest_args]
    out.write(f"running: pytest {' '.join(options.pytest_args)}\n")
    out.flush()

    def echo(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    # The kernel tests build csrc/ in a temp copy unless told to test the tree's own modules,
    # which this loop has just built and installed.
    env = {"KERNLOOP_TEST_INPLACE": "1", **os.environ, "PYTHONUNBUFFERED": "1"}
    rc = proc.stream(argv, echo, cwd=options.source_dir, env=env)
    out.write(f"tests {'passed' if rc == 0 else f'FAILED (pytest exit {rc})'}\n")
    out.flush()
    return rc == 0


def watch_loop(
    options: WatchOptions,
    *,
    out: TextIO | None = None,
    build: Callable[..., BuildResult] = run_build,
    stop_event=None,
) -> int:
    """Run until Ctrl-C (KeyboardInterrupt propagates) or ``max_cycles``; return the last cycle's status."""
    out = out or sys.stderr
    source_dir = Path(os.path.abspath(options.source_dir))
    options = WatchOptions(**{**options.__dict__, "source_dir": source_dir})
    dirs, files = watched(source_dir, options.paths)
    if not dirs and not files:
        from buildtools.errors import KernloopError

        raise KernloopError(f"nothing to watch in {source_dir}: none of {', '.join(options.paths)} exists", "pass --source-dir with the project root")
    names = ", ".join(str(p.relative_to(source_dir)) + ("/" if p.is_dir() else "") for p in (*dirs, *files))
    ok = True
    cycles = 0
    with ChangeFeed(dirs, files, debounce_ms=options.debounce_ms, step_ms=options.step_ms, stop_event=stop_event) as feed:
        if options.initial:
            ok = _cycle(options, out, build)
        out.write(f"watching {names} (Ctrl-C to stop)\n")
        out.flush()
        for changed in feed:
            out.write(f"changed: {describe_changes(changed, source_dir)}\n")
            out.flush()
            ok = _cycle(options, out, build)
            cycles += 1
            if options.max_cycles is not None and cycles >= options.max_cycles:
                break
            out.write(f"watching {names} (Ctrl-C to stop)\n")
            out.flush()
    return 0 if ok else 1
