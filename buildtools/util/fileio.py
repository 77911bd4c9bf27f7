"""Writing files without ever leaving a half-written one: temp file + fsync + rename, with backups.

Every failure a user can cause (read-only directory, full disk, permissions)
is a one-line :class:`~buildtools.errors.KernloopError`.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from buildtools.errors import KernloopError

__all__ = ["read_text", "atomic_write_text", "backup", "BACKUPS_KEPT"]

BACKUPS_KEPT = 5  # older backups of the same file are removed: only ours, named <file>.bak-<stamp>


def _os_error(action: str, path: Path, exc: OSError) -> KernloopError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
        return KernloopError(f"cannot {action} {path}: {what}",
                             f"make {path.parent} writable, or run from a writable checkout")
    if exc.errno == errno.ENOSPC:
        return KernloopError(f"cannot {action} {path}: no space left on device", "free some disk space")
    return KernloopError(f"cannot {action} {path}: {exc.strerror or exc}")


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise KernloopError(f"{path} is not UTF-8 text", f"fix or move {path}") from None
    except OSError as exc:
        raise _os_error("read", Path(path), exc) from None


def atomic_write_text(path: Path, text: str, *, keep_backup: bool = False) -> Path | None:
    """Replace ``path`` with ``text`` atomically: readers see the old file or the new one, never a mix.

    With ``keep_backup`` an existing file is first copied to a backup (see :func:`backup`), whose
    path is returned. The new text is written to a temp file before anything else, so a read-only
    directory fails before any change. Keeps the existing file's permission bits; a symlink is
    followed (the file it points to is replaced, the link stays).
    """
    path = Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode & 0o7777
        exists = True
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode, exists = 0o666 & ~umask, False
    tmp_name = None
    saved = None
    try:
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, mode)
        except OSError as exc:
            raise _os_error("write", path, exc) from None
        if keep_backup and exists:
            saved = backup(path)
        try:
            os.replace(tmp_name, path)
        except OSError as exc:
            raise _os_error("write", path, exc) from None
        tmp_name = None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return saved


def backup(path: Path, keep: int = BACKUPS_KEPT) -> Path:
    """Copy ``path`` to ``<path>.bak-<YYYYmmdd-HHMMSS.micro>`` (metadata kept); return the copy's path.

    Only the newest ``keep`` such backups are kept.
    """
    path = Path(path)
    micros = time.time_ns() // 1000
    while True:  # names sort by time, so pruning by name keeps the newest
        seconds, frac = divmod(micros, 1_000_000)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(seconds)) + f".{frac:06d}"
        target = path.with_name(f"{path.name}.bak-{stamp}")
        if not target.exists():
            break
        micros += 1
    try:
        shutil.copy2(path, target)
    except OSError as exc:
        raise _os_error("back up to", target, exc) from None
    # Only names this function makes (<file>.bak-YYYYmmdd-HHMMSS.micro): a user's own
    # "<file>.bak-1" is never touched. By name: the stamp sorts by time (copy2 keeps mtimes).
    ours = re.compile(re.escape(path.name) + r"\.bak-\d{8}-\d{6}\.\d{6}")
    olds = sorted((p for p in path.parent.iterdir() if ours.fullmatch(p.name)), key=lambda p: p.name)
    for old in olds[:-keep] if keep > 0 else []:
        if old != target:
            try:
                old.unlink()
            except OSError:
                pass  # a backup we cannot remove is harmless
    return target
