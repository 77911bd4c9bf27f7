"""Stat keys: whether a set of files and directories is still what it was, without reading them.

A key is ``[[path, [st_mtime_ns, st_size, st_ino, link target] | None], ...]`` (plain JSON);
:func:`key_changes` names the first entry whose stat differs now. An absent path is recorded
as None, so a file that appears later changes the key too. ``env_digest`` hashes the chosen
environment variables (their values are never stored: a URL in one may hold a password).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["stat_of", "stat_key", "key_changes", "env_digest"]


def stat_of(path: str) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    target = os.path.realpath(path) if os.path.islink(path) else None
    return [st.st_mtime_ns, st.st_size, st.st_ino, target]


def stat_key(paths: Iterable[str]) -> list[list[Any]]:
    return [[p, stat_of(p)] for p in paths]


def key_changes(key: Sequence[Any]) -> str | None:
    """The first path of ``key`` whose stat differs now (None: every entry still matches)."""
    for entry in key:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
            return "the record is damaged"
        if stat_of(entry[0]) != entry[1]:
            return entry[0]
    return None


def env_digest(env: Mapping[str, str], names: Sequence[str], prefixes: Sequence[str]) -> str:
    """A hash of the variables in ``names`` or starting with one of ``prefixes``."""
    items = sorted((k, v) for k, v in env.items() if k in names or k.startswith(tuple(prefixes)))
    return hashlib.sha256(repr(items).encode()).hexdigest()[:32]
