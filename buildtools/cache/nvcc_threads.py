"""nvcc ``--threads`` decided when a build starts: a lone dirty TU gets the machine.

The plan's NVCC_THREADS is right for a cold build (``jobs x threads <= cores``) and leaves cores
idle when one ``.cu`` is dirty. So CMake puts :data:`WRAPPER` (a POSIX sh script, ~1 ms) in
front of every nvcc command, and the build sets :data:`THREADS_ENV` for one run when few TUs are
left to compile; the wrapper then raises ``--threads`` up to that many, capped by the TU's own
``-gencode`` count. Nothing in build.ninja depends on it, and ccache is told to leave
``--threads`` out of its key (:data:`CCACHE_IGNORE_OPTIONS`; the shared-cache settings use the
same value), so going from a cold build to an edit and back never rebuilds or misses.

How many TUs are left is what ``ninja -n`` would run (:func:`pending_compiles`, pure).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

__all__ = ["WRAPPER", "THREADS_ENV", "CCACHE_IGNORE_OPTIONS", "pending_compiles", "threads_for_run"]

WRAPPER = Path(__file__).resolve().with_name("nvcc_threads.sh")
THREADS_ENV = "KERNLOOP_NVCC_THREADS_NOW"  # set by the build for one run only; read by WRAPPER
# nvcc's --threads changes how fast it compiles, never what it produces.
CCACHE_IGNORE_OPTIONS = "--threads=*"

_EDGE_RE = re.compile(r"^\[\d+/\d+\] Building (\S+) object ")
_REGENERATE_RE = re.compile(r"Re-running CMake|Re-checking globbed")


def pending_compiles(lines: Sequence[str]) -> tuple[int, int] | None:
    """(CUDA TUs, all TUs) that ``ninja -n`` lists; None when ninja would re-run CMake first
    (the new build.ninja may compile something else)."""
    cuda = total = 0
    for line in lines:
        if _REGENERATE_RE.search(line):
            return None
        m = _EDGE_RE.match(line)
        if m:
            total += 1
            cuda += m.group(1) == "CUDA"
    return cuda, total


def threads_for_run(cuda: int, compiles: int, cores: int, planned: int) -> int | None:
    """nvcc threads for this run when more than ``planned`` fit: the cores shared among the TUs
    left to compile (the wrapper caps each TU at its gencode count). None: keep the plan's."""
    if cuda < 1 or compiles < 1:
        return None
    share = max(1, cores // compiles)
    return share if share > planned else None
