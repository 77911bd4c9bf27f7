"""The build log (``<build dir>/kernloop-build.log``): every line of every step, kept for the user.

Writing it must never take the build down with a traceback: a full disk or a read-only build dir
shows up first here (buffered writes fail on ``write`` or only on ``close``). The first failure is
kept in :attr:`BuildLog.error` and writing stops; the runner turns it into one line with the fix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from buildtools.errors import KernloopError
from buildtools.util.os_errors import from_os_error

__all__ = ["BuildLog"]


class BuildLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.error: OSError | None = None
        self._file: TextIO | None = None

    def open(self) -> None:
        """Start the log afresh; KernloopError (with the fix) when it cannot be created. A symlink
        planted where the log goes is removed, never written through."""
        try:
            if self.path.is_symlink():
                self.path.unlink()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            self._file = open(fd, "w", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise from_os_error(exc, f"write the build log {self.path}", self.path.parent) from None

    def write(self, line: str) -> None:
        if self._file is None or self.error is not None:
            return
        try:
            self._file.write(line + "\n")
        except OSError as exc:
            self._fail(exc)

    def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as exc:
            if self.error is None:
                self.error = exc
            try:  # the buffer could not be flushed: drop it, close the descriptor
                file.close()
            except OSError:
                pass

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass

    def problem(self) -> KernloopError | None:
        """The failure to write, as the error the user sees (None: the log is complete)."""
        if self.error is None:
            return None
        return from_os_error(self.error, f"write the build log {self.path}", self.path.parent)
