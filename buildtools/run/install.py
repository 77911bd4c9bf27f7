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

from buildtools.util import proc
from buildtools.util.lock import pid_alive
from buildtools.util.os_errors import from_os_error

__all__ = ["InstalledFile", "InstallFailed", "InstallView", "install_atomically", "pending_install", "remove_leftovers"]


@dataclass(frozen=True)
class InstalledFile:
    path: Path
    changed: bool  # False: the same bytes were already there


@dataclass(frozen=True)
class InstallView:
    """What an install would do: every file it installs, and those whose bytes would change."""

    targets: tuple[Path, ...]
    changed: tuple[Path, ...]


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
    try:
        if stage.is_symlink():
            stage.unlink()  # never follow a link planted in the build dir
        elif stage.exists():
            shutil.rmtree(stage)
    except OSError as exc:
        raise from_os_error(exc, f"clear the install staging dir {stage}", build_dir) from None
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
            tmp = dest.with_name(f".{dest.name}.kernloop-{os.getpid()}.tmp")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                if src.is_symlink():
                    tmp.unlink(missing_ok=True)
                    os.symlink(os.readlink(src), tmp)
                else:
                    shutil.copy2(src, tmp)
                os.replace(tmp, dest)
            except OSError as exc:
                _remove_quietly(tmp)
                shutil.rmtree(stage, ignore_errors=True)
                raise from_os_error(exc, f"install {dest}", dest.parent) from None
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


def _remove_quietly(path: Path) -> None:
    """Remove a temp file if it is there; a read-only dir refuses even that (nothing to remove)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _would_change(src: Path, dest: Path) -> bool:
    if src.is_symlink():
        return not (dest.is_symlink() and os.readlink(dest) == os.readlink(src))
    return not _same_file_content(src, dest)


def pending_install(cmake: Path | str, build_dir: Path, prefix: Path, *, env: Mapping[str, str] | None = None) -> InstallView | None:
    """What the next install into ``prefix`` would change: ``cmake --install`` into a temp
    dir, compared byte for byte, as :func:`install_atomically` compares them (None: cannot tell,
    e.g. nothing built yet). A relink that produced the same bytes changes nothing."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="kernloop-install-check-") as tmp:
            res = proc.try_run([cmake, "--install", build_dir, "--prefix", tmp], env=env, timeout=300)
            if res is None or not res.ok:
                return None
            stage = Path(tmp)
            staged = sorted(p for p in stage.rglob("*") if p.is_file() or p.is_symlink())
            pairs = [(p, prefix / p.relative_to(stage)) for p in staged]
            return InstallView(tuple(d for _, d in pairs), tuple(d for s, d in pairs if _would_change(s, d)))
    except OSError:
        return None


class InstallFailed(Exception):
    def __init__(self, rc: int) -> None:
        super().__init__(rc)
        self.rc = rc
