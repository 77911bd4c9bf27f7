"""Install: ``cmake --install`` into a staging dir, then rename each changed file into place.

``cmake --install`` overwrites the ``.so`` in place (same inode): a Ctrl-C would leave half a
library, and a Python process that has the old one loaded could crash. A rename does neither.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

from buildtools.errors import KernloopError
from buildtools.util import proc
from buildtools.util.lock import pid_alive

__all__ = ["InstalledFile", "InstallFailed", "install_atomically", "remove_leftovers"]


@dataclass(frozen=True)
class InstalledFile:
    path: Path
    changed: bool  # False: the same bytes were already there


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done (only the main thread can do this)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _same_file_content(a: Path, b: Path) -> bool:
    import filecmp

    try:
        return b.exists() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def install_atomically(
    cmake: Path | str,
    build_dir: Path,
    prefix: Path,
    *,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] = lambda line: None,
    keep_fds: tuple[int, ...] = (),
) -> tuple[InstalledFile, ...]:
    """``cmake --install`` into a staging dir, then rename every changed file into ``prefix``."""
    stage = build_dir / ".kernloop-stage"
    if stage.is_symlink():
        stage.unlink()  # never follow a link planted in the build dir
    elif stage.exists():
        shutil.rmtree(stage)
    rc = proc.stream([cmake, "--install", build_dir, "--prefix", stage], on_line, env=env, on_interrupt="forward",
                     keep_fds=keep_fds)
    if rc != 0:
        raise InstallFailed(rc)
    staged = sorted(p for p in stage.rglob("*") if p.is_file() or p.is_symlink())
    installed: list[InstalledFile] = []
    with _sigint_deferred():
        for src in staged:
            dest = prefix / src.relative_to(stage)
            remove_leftovers(dest)
            if not src.is_symlink() and _same_file_content(src, dest):
                installed.append(InstalledFile(dest, False))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.kernloop-{os.getpid()}.tmp")
            try:
                if src.is_symlink():
                    tmp.unlink(missing_ok=True)
                    os.symlink(os.readlink(src), tmp)
                else:
                    shutil.copy2(src, tmp)
                os.replace(tmp, dest)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise KernloopError(f"cannot install {dest}: {exc.strerror or exc}", "check that the directory is writable") from None
            installed.append(InstalledFile(dest, True))
    shutil.rmtree(stage, ignore_errors=True)
    return tuple(installed)


_TMP_RE = re.compile(r"\.(?P<name>.+)\.kernloop-(?P<pid>\d+)\.tmp")


def remove_leftovers(dest: Path) -> None:
    """Temp copies of ``dest`` left by an install that was killed (``.<name>.kernloop-<pid>.tmp``,
    its process gone): removed before ``dest`` is installed again."""
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        m = _TMP_RE.fullmatch(entry.name)
        if m and m["name"] == dest.name and int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"])):
            entry.unlink(missing_ok=True)


class InstallFailed(Exception):
    def __init__(self, rc: int) -> None:
        super().__init__(rc)
        self.rc = rc
