"""Who is building in a build dir: the lock's holder, and what a killed build left running.

The build lock (``buildtools.util.lock``) is an ``flock``: the kernel drops it when the last
descriptor closes. A front end killed with SIGKILL cannot stop its children (they run in their
own session), so ninja and the compilers go on in the build dir -- holding the lock when they got
its descriptor, racing the next build when not. This module finds them through ``/proc``:
processes with the lock file open, or whose working directory or command line is in the build dir.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from buildtools.util.lock import INFO_NAME, LOCK_NAME, Holder, read_holder

__all__ = ["Process", "LockView", "observe_lock"]

_PROC = Path("/proc")
_MAX_COMMAND = 120


@dataclass(frozen=True)
class Process:
    pid: int
    command: str  # its command line, shortened

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command})"


@dataclass(frozen=True)
class LockView:
    build_dir: Path
    held: bool  # someone holds the lock now
    holder: Holder | None  # who said they took it (.kernloop.lock.json)
    holder_alive: bool  # that process still runs (False when there is no holder)
    processes: tuple[Process, ...]  # processes at work in the build dir (never doctor itself)

    @property
    def orphaned(self) -> bool:
        """A killed build's processes still run: the lock is held by no live holder, or the
        holder died leaving processes in the build dir."""
        if self.holder_alive:
            return False
        return (self.held and (self.holder is not None or bool(self.processes))) or (
            self.holder is not None and bool(self.processes))


def _is_held(lock: Path) -> bool:
    import fcntl

    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _start_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), from /proc; None when unknown."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in (_PROC / "stat").read_text().splitlines() if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _alive(holder: Holder) -> bool:
    import socket

    if holder.host and holder.host != socket.gethostname():
        return True  # another machine's build (a shared filesystem): not ours to judge
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError):
        return False
    started = _start_time(holder.pid)
    return started is None or started <= holder.since + 1  # a newer process with a reused pid is not it


def _ancestors() -> set[int]:
    out, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        try:
            stat = (_PROC / str(pid) / "stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        out.add(pid)
    return out


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _processes_in(build_dir: Path) -> tuple[Process, ...]:
    root = os.path.realpath(build_dir)
    lock = os.path.join(root, LOCK_NAME)
    skip = _ancestors()
    found: list[Process] = []
    try:
        entries = [e for e in os.listdir(_PROC) if e.isdigit()]
    except OSError:
        return ()
    for entry in sorted(entries, key=int):
        pid = int(entry)
        if pid in skip:
            continue
        base = _PROC / entry
        try:
            argv = [a for a in (base / "cmdline").read_bytes().decode(errors="replace").split("\0") if a]
        except OSError:
            continue
        if not argv:
            continue  # a kernel thread or a zombie
        hit = any(_inside(a, root) or root in a for a in argv)
        if not hit:
            try:
                hit = _inside(os.readlink(base / "cwd"), root)
            except OSError:
                pass
        if not hit:
            try:
                hit = any(os.readlink(base / "fd" / fd) == lock for fd in os.listdir(base / "fd"))
            except OSError:
                pass
        if hit:
            command = " ".join(argv)
            found.append(Process(pid, command if len(command) <= _MAX_COMMAND else command[: _MAX_COMMAND - 3] + "..."))
    return tuple(found)


def observe_lock(build_dir: Path) -> LockView | None:
    """The lock of ``build_dir`` and who is at work there (None: no build dir, no lock file)."""
    build_dir = Path(build_dir)
    if not (build_dir / LOCK_NAME).exists() and not (build_dir / INFO_NAME).exists():
        return None
    held = _is_held(build_dir / LOCK_NAME)
    holder = read_holder(build_dir)
    alive = holder is not None and _alive(holder)
    processes = () if alive else _processes_in(build_dir)
    return LockView(build_dir, held, holder, alive, processes)
