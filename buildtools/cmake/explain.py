"""Why each translation unit was rebuilt, from ninja's own explanation (``ninja -d explain``).

Pure parsing: the runner passes :data:`EXPLAIN_ARGS` to ninja (after ``cmake --build ... --``)
and feeds the lines in. Ninja says, per output, the first reason it found it dirty::

    ninja explain: output CMakeFiles/_C.dir/csrc/x.cu.o older than most recent input ../csrc/common/dtype.h (1 vs 2)
    ninja explain: command line changed for CMakeFiles/_C.dir/csrc/x.cu.o
    ninja explain: output CMakeFiles/_C.dir/csrc/x.cu.o doesn't exist
    ninja explain: deps for 'CMakeFiles/_C.dir/csrc/x.cu.o' are missing
    ninja explain: CMakeFiles/_C.dir/csrc/x.cu.o is dirty

An input that is the TU's own source is "the source changed"; any other is a header (ninja's
deps log lists every header a TU included). A compiler cache's word on the same TU is added by
the runner (``buildtools.cache.launcher.parse_stats_log``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from buildtools.cmake import ninja

__all__ = ["EXPLAIN_ARGS", "Explained", "is_explain_line", "shown_path", "parse_explain", "explain_tus", "explain_run"]

EXPLAIN_ARGS = ("-d", "explain")
_PREFIX = "ninja explain: "
_OLDER_RE = re.compile(r"^(?:output|recorded mtime of) (?P<out>.+?) older than most recent input (?P<input>.+?)"
                       r"(?: \(-?\d+ vs -?\d+\))?$")
_COMMAND_RE = re.compile(r"^command line changed for (?P<out>.+)$")
_MISSING_RE = re.compile(r"^output (?P<out>.+?) doesn't exist$")
_NO_DEPS_RE = re.compile(r"^(?P<out>.+?) has no deps recorded$|^deps for (?P<out2>.+?) are missing$")
_DIRTY_RE = re.compile(r"^(?P<out>.+?) is dirty$")


@dataclass(frozen=True)
class Explained:
    """One rebuilt TU: ``output`` as ninja names it, ``source`` relative to the source dir, why
    ninja rebuilt it, and what the compiler cache said (None: no cache, or it does not say)."""

    output: str
    source: str
    reason: str
    cache: str | None = None

    def line(self) -> str:
        return f"{self.source}: {self.reason}" + (f"; cache: {self.cache}" if self.cache else "")


def is_explain_line(line: str) -> bool:
    return line.startswith(_PREFIX)


def shown_path(path: str, source_dir: Path, build_dir: Path) -> str:
    """A path from ninja (relative to the build dir, or absolute) as the user knows it."""
    full = os.path.normpath(os.path.join(build_dir, path))
    try:
        rel = os.path.relpath(full, source_dir)
    except ValueError:
        return full
    return full if rel.startswith("..") else rel


def parse_explain(lines: Sequence[str], source_dir: Path, build_dir: Path) -> dict[str, tuple[str, str | None]]:
    """``output -> (kind, input)``: the first reason ninja gave for each output. ``kind`` is
    ``older`` (``input`` is newer), ``command``, ``missing``, ``no-deps`` or ``dirty``."""
    found: dict[str, tuple[str, str | None]] = {}
    for raw in lines:
        if not raw.startswith(_PREFIX):
            continue
        text = raw[len(_PREFIX):].rstrip()
        for kind, pattern in (("older", _OLDER_RE), ("command", _COMMAND_RE), ("missing", _MISSING_RE),
                              ("no-deps", _NO_DEPS_RE), ("dirty", _DIRTY_RE)):
            m = pattern.match(text)
            if m is None:
                continue
            out = (m.group("out") or m.groupdict().get("out2") or "").strip("'")
            inp = shown_path(m.group("input"), source_dir, build_dir) if kind == "older" else None
            if out not in found or (found[out][0] == "dirty" and kind != "dirty"):
                found[out] = (kind, inp)
            break
    return found


def _reason(kind: str, inp: str | None, source: str) -> str:
    if kind == "older":
        return "the source changed" if inp == source else f"a header changed: {inp}"
    return {
        "command": "its command changed (a flag, a define, the compiler)",
        "missing": "no previous output",
        "no-deps": "no previous output (no header list recorded for it)",
        "dirty": "an input of it was rebuilt",
    }[kind]


def explain_tus(outputs: Sequence[str], reasons: Mapping[str, tuple[str, str | None]],
                source_of: Mapping[str, str], cache: Mapping[str, str] | None = None) -> tuple[Explained, ...]:
    """One :class:`Explained` per rebuilt TU (``outputs``, in order), ``source_of`` mapping each
    output to its source; ``cache``: source -> the compiler cache's result for it."""
    out = []
    for output in outputs:
        source = source_of[output]
        kind, inp = reasons.get(output, ("", None))
        reason = _reason(kind, inp, source) if kind else "ninja gave no reason (a restat, or a regenerated build.ninja)"
        out.append(Explained(output, source, reason, (cache or {}).get(source)))
    return tuple(out)


def explain_run(ran: Iterable[Any], lines: Sequence[str], source_dir: Path, build_dir: Path,
                by_input: Mapping[str, Any] | None) -> tuple[Explained, ...]:
    """Why each TU that ran was rebuilt (ninja's explain lines in the step's output ``lines``), and
    the compiler cache's result for it (``by_input``: per compiled input, when the cache says)."""
    tus = [e.output for e in ran if ninja.is_translation_unit(e.output)]
    reasons = parse_explain(lines, source_dir, build_dir)
    cache = None if by_input is None else {shown_path(k, source_dir, build_dir): v for k, v in by_input.items()}
    return explain_tus(tus, reasons, {o: ninja.source_of(o) for o in tus}, cache)
