"""The one place for errors a user can cause.

Every such failure is a :class:`KernloopError`: the CLI prints it as one line
(``error: <what is wrong> -- <what to do>``) and exits non-zero, never a traceback.
"""
from __future__ import annotations

__all__ = ["KernloopError", "EXIT_USER_ERROR"]

EXIT_USER_ERROR = 2


class KernloopError(Exception):
    """A failure the user can fix. ``hint`` says how (a flag, env var or package)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f" -- {self.hint}"
        return " ".join(text.split())  # one line, always
