"""Questions for the user: questionary on a terminal, a one-line error naming the flag otherwise.

questionary (and prompt_toolkit under it) is imported only when a question is
actually asked: it costs ~0.1 s, which the generator's common path never pays.
Tests pass ``input``/``output`` (prompt_toolkit pipe input, dummy output).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from buildtools.errors import KernloopError

__all__ = ["is_interactive", "confirm", "ask_path"]


def is_interactive() -> bool:
    """Both ends are a terminal (a piped or CI run is not), and KERNLOOP_NO_PROMPT is not set."""
    if os.environ.get("KERNLOOP_NO_PROMPT"):
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _require_terminal(problem: str, hint: str, interactive: bool | None) -> None:
    if interactive is None:
        interactive = is_interactive()
    if not interactive:
        raise KernloopError(problem, hint)


def confirm(question: str, *, problem: str, hint: str, default: bool = False,
            interactive: bool | None = None, **io: Any) -> bool:
    """Yes/no on a terminal. Without one: KernloopError(problem, hint), the hint naming the flag
    that answers the question. Ctrl-C: KeyboardInterrupt."""
    _require_terminal(problem, hint, interactive)
    import questionary

    return bool(questionary.confirm(question, default=default, **io).unsafe_ask())


def ask_path(
    question: str,
    *,
    problem: str,
    hint: str,
    validate: Callable[[Path], str | None],
    allow_empty: bool = False,
    interactive: bool | None = None,
    **io: Any,
) -> Path | None:
    """A path typed on a terminal, re-asked until ``validate(path)`` returns None (it returns the
    problem otherwise). An empty answer returns None when ``allow_empty``. Without a terminal:
    KernloopError(problem, hint)."""
    _require_terminal(problem, hint, interactive)
    import questionary

    def check(text: str) -> bool | str:
        text = text.strip()
        if not text:
            return True if allow_empty else "a path is needed"
        issue = validate(Path(text).expanduser())
        return True if issue is None else issue

    answer = questionary.path(question, validate=check, **io).unsafe_ask()
    answer = (answer or "").strip()
    return Path(answer).expanduser() if answer else None
