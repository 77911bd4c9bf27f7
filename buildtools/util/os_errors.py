"""What to do about an ``OSError`` that the filesystem gave: one hint per kind of cause.

A full disk, a read-only mount, an immutable or unwritable directory: each is a state of the
machine the user can change, so each becomes a :class:`~buildtools.errors.KernloopError` with
the fix, never a traceback.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from buildtools.errors import KernloopError

__all__ = ["os_error_kind", "os_error_hint", "from_os_error"]

_KINDS = {
    errno.ENOSPC: "no-space",
    errno.EDQUOT: "no-space",
    errno.EROFS: "read-only-fs",
    errno.EPERM: "not-permitted",
    errno.EACCES: "permission",
}


def os_error_kind(exc: OSError) -> str:
    """"no-space", "read-only-fs", "not-permitted" (EPERM: often ``chattr +i``), "permission", "other"."""
    return _KINDS.get(exc.errno or 0, "other")


def os_error_hint(exc: OSError, where: Path | str | None = None) -> str:
    """The fix for ``exc`` at ``where`` (the directory that has to change)."""
    place = str(where) if where is not None else (os.path.dirname(exc.filename) if isinstance(exc.filename, str) else "")
    place = place or "the directory"
    kind = os_error_kind(exc)
    if kind == "no-space":
        return f"free some disk space on the filesystem of {place} (df -h {place}), then run again"
    if kind == "read-only-fs":
        return f"{place} is on a read-only filesystem: remount it read-write or use a writable checkout"
    if kind in ("not-permitted", "permission"):
        return f"make {place} writable (chattr -i {place} if it is immutable; chmod u+w {place})"
    return f"check {place}"


def from_os_error(exc: OSError, what: str, where: Path | str | None = None) -> KernloopError:
    """``cannot <what>: <strerror>`` with the fix for that cause."""
    reason = exc.strerror or str(exc)
    return KernloopError(f"cannot {what}: {reason}", os_error_hint(exc, where))
