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
           "lock_holders", "pid_alive"]

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
    return True


def lock_holders(build_dir: Path) -> tuple[tuple[int, str], ...]:
    """(pid, command) of every process that has ``build_dir``'s lock file open, from /proc: the
    build's children inherit the lock, so after its front end was killed these are the orphans."""
    target = os.path.realpath(Path(build_dir) / LOCK_NAME)
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
            if not any(os.readlink(f"/proc/{entry.name}/fd/{fd}") == target for fd in fds):
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                command = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone, or not ours to look at
        found.append((int(entry.name), redact(command)[:120]))
    return tuple(found)


def waiting_notice(build_dir: Path, say: Callable[[str], None], prefix: str = "") -> Callable[[Holder | None], None]:
    """An ``on_wait`` for :class:`BuildLock` that says who holds ``build_dir``; when the build that
    took the lock is gone, the processes it left that still hold it, and how to stop them."""

    def waiting(holder: Holder | None) -> None:
        if holder is not None and not pid_alive(holder.pid):
            orphans = lock_holders(build_dir)
            pids = " ".join(str(p) for p, _ in orphans)
            say(f"{prefix}waiting for {build_dir}: the build {holder.describe()} was killed, but "
                f"{len(orphans) or 'some'} of its processes still run"
                + (f" ({', '.join(c.split(' ')[0].rsplit('/', 1)[-1] for _, c in orphans[:4])}) -- "
                   f"let them finish, or stop them: kill {pids}" if orphans else ""))
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
