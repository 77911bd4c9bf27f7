"""What a check found, in one severity vocabulary for doctor and torch check alike.

- ``error``: the build or the run will fail; the command exits 1;
- ``warning``: works with caveats, or will cost time (a cold rebuild, a mismatch torch warns about);
- ``note``: worth knowing, not a problem;
- ``ok``: checked and fine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

__all__ = ["LEVELS", "Finding", "worst", "MARKS"]

LEVELS = ("ok", "note", "warning", "error")
# How each level is shown at the start of a line (fixed width).
MARKS = {"ok": "ok   ", "note": "note ", "warning": "WARN ", "error": "ERROR"}


@dataclass(frozen=True)
class Finding:
    check: str  # short id: "torch-cuda-vs-nvcc", "host-compiler", "modules:_C", ...
    level: str  # one of LEVELS
    message: str
    fix: str = ""


def worst(levels: Iterable[str]) -> str:
    """The most severe of ``levels`` ("ok" for none)."""
    return max(levels, key=LEVELS.index, default="ok")
