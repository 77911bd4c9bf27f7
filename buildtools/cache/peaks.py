"""RAM per compile job, learned from what the TUs really took.

Every real compile goes through :data:`RECORDER` (``peak_rss.py``: ccache's ``CCACHE_PREFIX``, so
hits are not counted, or the compiler launcher when there is no cache), which appends the
compile's peak RSS to ``.kernloop-tu-peaks.log`` in the build dir. After a build,
:func:`fold` keeps the latest peak of each source in ``.kernloop-tu-peaks.json``; the next plan
reads :func:`learned`: per kind, the :data:`PERCENTILE` th percentile of those TUs plus
:data:`HEADROOM`, rounded up to :data:`STEP_GIB`. A project's ``[tool.buildtools]
ram-per-*-job-gib`` still wins; the measured constants in ``buildtools.settings`` stay the
first build's figures. sccache compiles in its own server (and distributed compile elsewhere),
out of any launcher's reach: with sccache nothing is learned.

A build replans at once when a learned figure rises above the planned one (:func:`rise_reason`:
fewer jobs, so the budget holds); a fall waits for the next time the presets are written, so an
edit never reconfigures for a few MB.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from buildtools.cache import peak_rss
from buildtools.cmake.presets import build_dir_name
from buildtools.errors import KernloopError
from buildtools.model import GIB, LearnedRam
from buildtools.util import fileio

__all__ = ["RECORDER", "LOG_NAME", "RECORD_NAME", "PERCENTILE", "HEADROOM", "STEP_GIB", "KINDS", "TuPeak",
           "parse_log", "read_record", "fold", "summarize", "learned", "describe", "recorder_argv",
           "ccache_prefix", "rise_reason", "after_build"]

RECORDER = Path(peak_rss.__file__).resolve()
LOG_NAME = peak_rss.LOG_NAME
RECORD_NAME = ".kernloop-tu-peaks.json"
_FORMAT = 1
PERCENTILE = 95
HEADROOM = 1.25  # for what one build's peaks do not show: a heavier edit, another compiler version
STEP_GIB = 0.05
KINDS = {"CXX": "C++ TU", "CUDA": "CUDA TU"}
_RISE = 1.1  # replan when a learned figure exceeds the planned one by more than 10 %


@dataclass(frozen=True)
class TuPeak:
    kind: str  # a key of KINDS
    peak_kib: int  # the heaviest process of the compile (ru_maxrss)
    threads: int  # nvcc --threads of that compile (1 for C++)
    source: str  # absolute path


def parse_log(text: str) -> list[TuPeak]:
    """The recorder's lines, oldest first; lines of another format or torn are skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 5 and parts[0] == peak_rss.FORMAT and parts[1] in KINDS and parts[2].isdigit() \
                and parts[3].isdigit():
            out.append(TuPeak(parts[1], int(parts[2]), int(parts[3]), parts[4]))
    return out


def _load_json(path: Path) -> dict[str, TuPeak]:
    try:
        data = json.loads(path.read_text())
        tus = data["tus"] if data.get("format") == _FORMAT else {}
        return {src: TuPeak(v["kind"], int(v["peak_kib"]), int(v["threads"]), src) for src, v in tus.items()
                if v.get("kind") in KINDS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # absent or damaged: learning starts again, the defaults hold meanwhile


def read_record(build_dir: Path) -> dict[str, TuPeak]:
    """The latest peak per source in ``build_dir``: the folded record, then the log not yet folded
    (a plain ``cmake --build`` leaves one)."""
    record = _load_json(Path(build_dir) / RECORD_NAME)
    try:
        text = (Path(build_dir) / LOG_NAME).read_text(errors="replace")
    except OSError:
        text = ""
    record.update({p.source: p for p in parse_log(text)})
    return record


def fold(build_dir: Path) -> int:
    """Fold the log into the record (one atomic write; then the log goes). Returns the number of
    compiles measured since the last fold. Call it with the build dir's lock held."""
    log = Path(build_dir) / LOG_NAME
    try:
        new = parse_log(log.read_text(errors="replace"))
    except OSError:
        return 0
    record = _load_json(Path(build_dir) / RECORD_NAME)
    record.update({p.source: p for p in new})
    tus = {src: {"kind": p.kind, "peak_kib": p.peak_kib, "threads": p.threads} for src, p in sorted(record.items())}
    try:
        fileio.atomic_write_text(Path(build_dir) / RECORD_NAME, json.dumps({"format": _FORMAT, "tus": tus}, indent=1) + "\n")
        log.unlink()
    except (OSError, KernloopError):  # a full or read-only build dir: keep the log, learn next time
        return 0
    return len(new)


def _round_up(gib: float) -> float:
    return round(math.ceil(gib / STEP_GIB - 1e-9) * STEP_GIB, 2)


def summarize(peaks: Iterable[TuPeak]) -> tuple[LearnedRam, ...]:
    """Per kind: the nearest-rank :data:`PERCENTILE` th percentile of the TUs' peaks, plus headroom. Pure."""
    out = []
    by_kind: dict[str, list[TuPeak]] = {}
    for p in peaks:
        by_kind.setdefault(p.kind, []).append(p)
    for kind in KINDS:
        items = sorted(by_kind.get(kind, ()), key=lambda p: p.peak_kib)
        if not items:
            continue
        rank = max(1, math.ceil(PERCENTILE / 100 * len(items)))
        pct = items[rank - 1].peak_kib * 1024 / GIB
        out.append(LearnedRam(kind, _round_up(pct * HEADROOM), round(pct, 3), len(items), items[-1].source))
    return tuple(out)


def learned(source_dir: Path) -> tuple[LearnedRam, ...]:
    """What the builds of ``source_dir`` measured (every ``cmake-build-*`` dir; a source seen in
    several counts once), for sources that still exist."""
    merged: dict[str, TuPeak] = {}
    for build_dir in sorted(Path(source_dir).glob(build_dir_name("*"))):
        merged.update(read_record(build_dir))
    return summarize(p for src, p in merged.items() if os.path.exists(src))


def describe(item: LearnedRam) -> str:
    """``p95 0.24 GiB of 14 TUs measured in earlier builds (heaviest: ops.cpp) +25%``."""
    return (f"p{PERCENTILE} {item.percentile_gib:.2f} GiB of {item.tus} TU{'s' if item.tus != 1 else ''} "
            f"measured in earlier builds (heaviest: {Path(item.heaviest).name}) +{round((HEADROOM - 1) * 100)}%")


def recorder_argv(python: Path) -> tuple[str, ...]:
    """The recorder as a compiler launcher list (no compiler cache)."""
    return (str(python), "-I", "-S", str(RECORDER))


def ccache_prefix(python: Path) -> str | None:
    """``CCACHE_PREFIX`` for the recorder; None when a path has a space (ccache splits on spaces)."""
    argv = recorder_argv(python)
    return None if any(c.isspace() for a in argv for c in a) else " ".join(argv)


def rise_reason(planned: Mapping[str, float], now: Iterable[LearnedRam]) -> str | None:
    """Why the presets must be replanned now: a learned figure above what they were planned with
    (``planned``: kind -> GiB, only the kinds the project does not pin). None: no rise."""
    rose = [f"{KINDS[n.kind]} {planned[n.kind]:g} -> {n.gib:g} GiB ({describe(n)})" for n in now
            if n.kind in planned and n.gib > planned[n.kind] * _RISE]
    return f"measured RAM per job rose: {'; '.join(rose)}" if rose else None


def after_build(build_dir: Path) -> str | None:
    """Fold what this build measured; the build summary's step line, or None when nothing compiled."""
    measured = fold(build_dir)
    if not measured:
        return None
    figures = ", ".join(f"{KINDS[n.kind]} p{PERCENTILE} {n.percentile_gib:.2f} GiB of {n.tus}"
                        for n in summarize(_load_json(Path(build_dir) / RECORD_NAME).values()))
    return f"memory: peak RSS of {measured} compile{'s' if measured != 1 else ''} recorded ({figures})"
