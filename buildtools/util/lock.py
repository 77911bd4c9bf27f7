"""One build at a time per build directory.

An exclusive ``flock`` on ``<build dir>/.kernloop.lock``: the kernel drops it when
the holder exits, however it exits, so a crashed build never leaves a stale lock.
The holder describes itself (pid, command, since when) in ``.kernloop.lock.json``,
written atomically after the lock is taken and removed before it is released, so
a second build can say who it is waiting for.

``--clean`` empties the build directory but keeps these two files (see
:data:`LOCK_FILES`): deleting a held lock file would let a third build lock a new
inode while the first still runs.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from buildtools.errors import KernloopError
from buildtools.util.secrets import redact

__all__ = ["LOCK_NAME", "INFO_NAME", "LOCK_FILES", "Holder", "BuildLock", "read_holder", "waiting_notice",
           "Process", "pid_alive", "holder_alive", "is_held", "processes_in"]

LOCK_NAME = ".kernloop.lock"
INFO_NAME = ".kernloop.lock.json"
LOCK_FILES = frozenset({LOCK_NAME, INFO_NAME})

_POLL_S = 0.1


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    since: float  # time.time() when the lock was taken
    host: str

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} ({self.command}) since {when}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    except (OverflowError, ValueError):
        return False
    return True


# -- who is at work in a build dir: what a killed build left running -------------------------------
# A front end killed with SIGKILL cannot stop its children (they run in their own session), so
# ninja and the compilers go on; they hold the lock, having inherited its descriptor. /proc shows
# them: processes with the lock file open, or whose working directory or command line is inside.
_PROC = Path("/proc")
_MAX_COMMAND = 120


@dataclass(frozen=True)
class Process:
    pid: int
    command: str  # its command line, shortened

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command})"


def is_held(lock: Path) -> bool:
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


def holder_alive(holder: Holder) -> bool:
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


def processes_in(build_dir: Path) -> tuple[Process, ...]:
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
            command = redact(" ".join(argv))
            found.append(Process(pid, command if len(command) <= _MAX_COMMAND else command[: _MAX_COMMAND - 3] + "..."))
    return tuple(found)


def waiting_notice(build_dir: Path, say: Callable[[str], None], prefix: str = "") -> Callable[[Holder | None], None]:
    """An ``on_wait`` for :class:`BuildLock` that says who holds ``build_dir``; when the build that
    took the lock is gone, the processes it left that still hold it, and how to stop them."""

    def waiting(holder: Holder | None) -> None:
        if holder is not None and not holder_alive(holder):
            orphans = processes_in(build_dir)
            pids = " ".join(str(p.pid) for p in orphans)
            names = ", ".join(p.command.split(" ")[0].rsplit("/", 1)[-1] for p in orphans[:4])
            say(f"{prefix}waiting for {build_dir}: the build {holder.describe()} was killed, but "
                f"{len(orphans) or 'some'} of its processes still run"
                + (f" ({names}) -- let them finish, or stop them: kill {pids}" if orphans else ""))
            return
        who = holder.describe() if holder else "another process"
        say(f"{prefix}waiting for {build_dir}: locked by {who}")

    return waiting


def read_holder(build_dir: Path) -> Holder | None:
    """Who says they hold the lock of ``build_dir`` (None: nobody, or not written yet)."""
    try:
        data = json.loads((Path(build_dir) / INFO_NAME).read_text())
        return Holder(int(data["pid"]), str(data["command"]), float(data["since"]), str(data.get("host", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = f"python -m {Path(argv[0]).parent.name}"
    return redact(" ".join(argv)) or "python"  # other users read it: no URL password


class BuildLock:
    """``with BuildLock(build_dir, on_wait=print_fn):`` -- waits while another process holds it.

    ``on_wait(holder)`` is called when we start waiting and again whenever the
    holder changes (None when it has not described itself yet). ``timeout_s``:
    give up with a KernloopError after that long (None: wait as long as it takes).
    """

    def __init__(
        self,
        build_dir: Path,
        *,
        on_wait: Callable[[Holder | None], None] | None = None,
        timeout_s: float | None = None,
        command: str | None = None,
    ) -> None:
        self.build_dir = Path(build_dir)
        self.on_wait = on_wait
        self.timeout_s = timeout_s
        self.command = command or _command_line()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int | None:
        """The locked file descriptor: hand it to the build's children (``proc.stream(keep_fds=)``)
        so that the lock stays held as long as any of them runs, even if this process is killed."""
        return self._fd

    def acquire(self) -> None:
        import fcntl

        try:
            self.build_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.build_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise KernloopError(
                f"cannot create the build lock in {self.build_dir}: {exc.strerror or exc}",
                "check that the build directory is writable",
            ) from None
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        announced: object = _NOT_YET
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                holder = read_holder(self.build_dir)
                if holder != announced and self.on_wait is not None:
                    self.on_wait(holder)
                announced = holder
                if deadline is not None and time.monotonic() >= deadline:
                    who = holder.describe() if holder else "another process"
                    raise KernloopError(
                        f"build directory {self.build_dir} is locked by {who}",
                        "wait for that build to finish, or stop it",
                    )
                time.sleep(_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._write_info()

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "command": self.command, "since": time.time(), "host": socket.gethostname()}
        tmp = self.build_dir / f"{INFO_NAME}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.build_dir / INFO_NAME)
        except OSError:
            tmp.unlink(missing_ok=True)  # the lock still works; only the description is missing

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            (self.build_dir / INFO_NAME).unlink(missing_ok=True)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "BuildLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_NOT_YET = object()
