"""The single helper through which buildtools runs other programs.

List argv only (never a shell), text output, a timeout, and a KernloopError
instead of FileNotFoundError/PermissionError so callers never see a traceback.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping, Sequence

from buildtools.errors import KernloopError

__all__ = ["Result", "run", "try_run", "stream", "spawn"]


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _cannot_start(program: str, exc: OSError) -> KernloopError:
    """The one line for a program that did not start: missing, not executable, or another OS
    error (an exec format error from a broken wrapper script, say)."""
    if isinstance(exc, FileNotFoundError):
        return KernloopError(f"cannot run {program}: not found")
    if isinstance(exc, PermissionError):
        return KernloopError(f"cannot run {program}: permission denied", "check that it is an executable file")
    return KernloopError(f"cannot run {program}: {exc.strerror or exc}")


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60.0,
    check: bool = False,
    capture: bool = True,
) -> Result:
    """Run ``argv``; raise KernloopError if it cannot start, times out, or (check) fails."""
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            text=True,
            capture_output=capture,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise _cannot_start(args[0], exc) from None
    except subprocess.TimeoutExpired:
        raise KernloopError(f"{Path(args[0]).name} did not finish within {timeout:.0f} s: {' '.join(args)}") from None
    result = Result(tuple(args), proc.returncode, proc.stdout or "", proc.stderr or "")
    if check and not result.ok:
        first = (result.stderr or result.stdout).strip().splitlines()
        detail = first[0] if first else f"exit code {result.returncode}"
        raise KernloopError(f"{Path(args[0]).name} failed: {detail}")
    return result


def try_run(argv: Sequence[str | os.PathLike[str]], **kwargs) -> Result | None:
    """Like :func:`run` but returns None when the program cannot be run at all (probing)."""
    try:
        return run(argv, **kwargs)
    except KernloopError:
        return None


def stream(
    argv: Sequence[str | os.PathLike[str]],
    on_line: Callable[[str], None],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    on_interrupt: Literal["forward", "finish"] = "forward",
    keep_fds: Sequence[int] = (),
) -> int:
    """Run ``argv`` with stdout+stderr merged, handing each line to ``on_line``; return the exit code.

    For long builds whose output is parsed as it arrives. The child runs in its own
    session so a terminal Ctrl-C reaches only us; then ``on_interrupt`` decides:
    "forward" passes SIGINT on (ninja removes partial outputs) and waits, "finish"
    lets the child complete (a step that must not stop half-way). Either way the
    KeyboardInterrupt is re-raised once the child is gone. ``keep_fds`` are inherited by the child
    and everything it starts (a build lock then stays held while any of them runs).
    """
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            text=True,
            errors="replace",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=tuple(keep_fds),
        )
    except OSError as exc:
        raise _cannot_start(args[0], exc) from None
    assert proc.stdout is not None
    interrupted = False
    while True:
        try:
            for line in proc.stdout:
                on_line(line.rstrip("\n"))
            proc.wait()
            break
        except KeyboardInterrupt:
            if not interrupted and on_interrupt == "forward":
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
            interrupted = True  # keep draining so the child never blocks on a full pipe
    if interrupted:
        raise KeyboardInterrupt
    return proc.returncode


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Start ``argv`` in the background, in its own session, stdout+stderr appended to ``log``;
    its PID. For servers that must outlive the command that starts them (``dist up``)."""
    args = [os.fspath(a) for a in argv]
    try:
        with open(log, "ab") as out:
            child = subprocess.Popen(args, cwd=cwd, env=dict(env) if env is not None else None, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise _cannot_start(args[0], exc) from None
    return child.pid
