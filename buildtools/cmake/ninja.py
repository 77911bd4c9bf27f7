"""Reading what ninja says: its status lines, its ``.ninja_log``, and compiler errors.

Pure parsing, no processes: the runner (``buildtools.run.build``) feeds lines in.

* Status: the runner sets ``NINJA_STATUS`` to :data:`STATUS_FORMAT`, so every
  line ninja prints for an edge starts with a marker we can parse exactly
  (``@@kl 3 40 2 12.345 @@ Building CUDA object ...``).
* Log: ``.ninja_log`` (v5-v7: ``start end mtime output cmdhash``, times in ms)
  keeps the last run of every output. Which edges ran in *this* build is the set
  of entries that are new or changed between a snapshot taken before and one
  taken after; that survives ninja's log recompaction, unlike a byte offset.
* Errors: the first diagnostic that is an error (gcc/clang, nvcc/EDG, ptxas,
  the linker, CMake), with the few lines that explain it (source line, caret).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = [
    "STATUS_FORMAT",
    "Status",
    "parse_status",
    "LogEntry",
    "read_log",
    "ran_between",
    "is_translation_unit",
    "source_of",
    "slowest",
    "Diagnostic",
    "first_error",
]

# %f finished, %t total, %r running, %e elapsed seconds. Non-TTY ninja prints
# one such line per edge when it finishes; the marker cannot occur in compiler output.
STATUS_FORMAT = "@@kl %f %t %r %e @@ "
_STATUS_RE = re.compile(r"@@kl (\d+) (\d+) (\d+) ([\d.]+) @@ ?(.*)$")


@dataclass(frozen=True)
class Status:
    finished: int
    total: int
    running: int
    elapsed_s: float
    description: str  # "Building CUDA object CMakeFiles/_C.dir/csrc/x.cu.o"


def parse_status(line: str) -> Status | None:
    """A :class:`Status` for a ninja status line in our format, else None."""
    m = _STATUS_RE.search(line)
    if not m:
        return None
    return Status(int(m[1]), int(m[2]), int(m[3]), float(m[4]), m[5].strip())


@dataclass(frozen=True)
class LogEntry:
    start_ms: int
    end_ms: int
    mtime: int
    output: str  # relative to the build dir, as ninja names it
    cmdhash: str

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


def read_log(path: Path) -> dict[str, LogEntry]:
    """The latest entry per output in a ``.ninja_log``; {} when there is none yet."""
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    entries: dict[str, LogEntry] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 5:
            continue  # a line cut short by an interrupted write
        try:
            entry = LogEntry(int(parts[0]), int(parts[1]), int(parts[2]), parts[3], parts[4])
        except ValueError:
            continue
        entries[entry.output] = entry  # later lines win, as in ninja
    return entries


def ran_between(before: Mapping[str, LogEntry], after: Mapping[str, LogEntry]) -> list[LogEntry]:
    """Entries of edges that ran after ``before`` was taken, in the order they started."""
    ran = [e for out, e in after.items() if before.get(out) != e]
    return sorted(ran, key=lambda e: (e.start_ms, e.output))


_OBJ_SUFFIXES = (".o", ".obj", ".gch", ".pch")  # objects, and precompiled headers (CMake's cmake_pch.hxx.gch)


def is_translation_unit(output: str) -> bool:
    """An object file or a precompiled header, i.e. one compiled translation unit."""
    return output.endswith(_OBJ_SUFFIXES)


def source_of(output: str) -> str:
    """``CMakeFiles/_C.dir/csrc/x.cu.o`` -> ``csrc/x.cu`` (CMake's object naming).

    CMake names objects ``<dir>/CMakeFiles/<target>.dir/<source relative to the
    target's source dir>.o`` and spells ``..`` as ``__``.
    """
    path = output
    m = re.search(r"CMakeFiles/[^/]+\.dir/(.+)$", path)
    if m:
        path = m[1]
    for suffix in _OBJ_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return "/".join(".." if part == "__" else part for part in path.split("/"))


def slowest(entries: Iterable[LogEntry], n: int = 5) -> list[LogEntry]:
    """The ``n`` longest-running translation units among ``entries``."""
    tus = [e for e in entries if is_translation_unit(e.output)]
    return sorted(tus, key=lambda e: (-e.duration_ms, e.output))[:n]


@dataclass(frozen=True)
class Diagnostic:
    """The first error of a failed build, ready to show."""

    message: str  # the error line itself
    context: tuple[str, ...]  # the lines after it that belong to it (source line, caret, notes)
    target: str | None  # what ninja was building ("FAILED: <target>"), when known

    def render(self) -> str:
        lines = [self.message, *self.context]
        if self.target:
            lines.append(f"(while building {self.target})")
        return "\n".join(lines)

    @property
    def headline(self) -> str:
        """The error as one line: a CMake error's header joined with its wrapped text."""
        text = self.message.strip()
        if text.startswith("CMake Error") and self.context:
            text = " ".join([text, *(c.strip() for c in self.context)])
        text = " ".join(text.split())
        return text if len(text) <= _MAX_HEADLINE else text[: _MAX_HEADLINE - 3] + "..."

    @property
    def hint(self) -> str:
        """What to do when the cause is the machine rather than the code ("" otherwise)."""
        text = " ".join([self.message, *self.context])
        for pattern, fix in _OS_HINTS:
            if pattern.search(text):
                return fix
        return ""


_FAILED_RE = re.compile(r"^FAILED: (?:\[code=\d+\] )?(.+?)\s*$")
_ERROR_RES = (
    re.compile(r"^\S.*?:\d+:(?:\d+:)? (?:fatal )?error: "),  # gcc / clang
    re.compile(r"^\S.*?\(\d+\): (?:catastrophic )?error"),  # nvcc front end (EDG)
    re.compile(r"^(?:ptxas|nvlink|nvcc)\S* (?:fatal|error)\s*:"),  # ptxas error   : ...
    re.compile(r"^CMake Error"),
    re.compile(r"undefined reference to|multiple definition of"),  # the linker
    re.compile(r"^\S*(?:ld|lld|collect2)(?:\.\w+)?: (?:fatal )?error"),
    re.compile(r"^(?:fatal )?error: "),  # a bare driver error
    re.compile(r"^ninja: (?:error|fatal): "),  # ninja itself: a broken build.ninja, a missing input
    re.compile(r"^\S*(?:ld|lld|collect2)(?:\.\w+)?: .*(?:No space left on device|Read-only file system|Permission denied)"),
    re.compile(r"No space left on device|Read-only file system|Permission denied|Disk quota exceeded"),  # the OS
)
# A cause that is the machine, not the code, and what to do about it.
_OS_HINTS = (
    (re.compile(r"No space left on device|Disk quota exceeded"), "free some disk space (df -h), then build again"),
    (re.compile(r"Read-only file system"), "the build writes there: remount it read-write or use a writable checkout"),
    (re.compile(r"Permission denied|Operation not permitted"), "make the build dir and the package dir writable (chmod u+w, chattr -i)"),
)
_MAX_HEADLINE = 400
# A line that starts a new diagnostic ends the context of the previous one.
_NEW_DIAG_RE = re.compile(
    r"^\S.*?(?::\d+:(?:\d+:)?|\(\d+\):) (?:fatal |catastrophic )?(?:error|warning|note|remark)"
    r"|^In file included from|^\S+: In (?:function|member function|instantiation)"
    r"|^ninja: |^FAILED: |^\[\d+/\d+\]|^@@kl "
)
_MAX_CONTEXT = 6


def first_error(lines: Sequence[str]) -> Diagnostic | None:
    """The first error in a build's output (ninja's merged stdout/stderr), or None."""
    target = None
    commands: set[int] = set()  # ninja prints the failed command right after FAILED:
    for i, line in enumerate(lines):
        m = _FAILED_RE.match(line)
        if m:
            target = target or m[1]
            commands.add(i + 1)
            continue
        if i in commands:
            continue
        if not any(r.search(line) for r in _ERROR_RES):
            continue
        context: list[str] = []
        cmake_block = line.startswith("CMake Error")
        for follow in lines[i + 1 : i + 1 + _MAX_CONTEXT]:
            if _NEW_DIAG_RE.search(follow) or _FAILED_RE.match(follow):
                break
            if not follow.strip():
                if cmake_block and not context:
                    continue  # CMake puts a blank line between the header and its text
                break
            context.append(follow.rstrip())
        return Diagnostic(line.rstrip(), tuple(context), target)
    if target:  # failed without a recognisable diagnostic: show what ninja said
        tail = [
            l
            for i, l in enumerate(lines)
            if l.strip() and i not in commands and not l.startswith(("ninja: ", "@@kl ", "FAILED: "))
        ]
        return Diagnostic(f"{target} failed", tuple(tail[-_MAX_CONTEXT:]), target)
    return None
