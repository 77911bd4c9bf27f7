"""What every figure shares: settings, timing, statistics, results, progress lines, temp trees.

Every benchmark works on a temporary copy of the tracked tree (``git ls-files``), never on the
developer's checkout, and a figure that needs a cold compiler cache gives the build its own empty
``CCACHE_DIR``.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from buildtools.util import proc
from buildtools.errors import KernloopError

__all__ = [
    "REPO",
    "BenchConfig",
    "Series",
    "Target",
    "Figure",
    "Progress",
    "timed",
    "series",
    "ratio",
    "copy_tracked_tree",
    "base_env",
    "heartbeat",
    "fmt_s",
]

REPO = Path(__file__).resolve().parent.parent
# Planner overrides and build settings from the caller's shell must not leak into a measurement.
_SCRUB = ("MAX_JOBS", "NVCC_THREADS", "TORCH_CUDA_ARCH_LIST", "CMAKE_BUILD_TYPE", "CMAKE_ARGS",
          "KERNLOOP_RAM_BUDGET", "CUDACXX", "CMAKE_CUDA_COMPILER", "PYTHONPATH", "CCACHE_DIR",
          "CCACHE_DISABLE", "CCACHE_RECACHE", "KERNLOOP_TEST_INPLACE", "CMAKE_BUILD_PARALLEL_LEVEL",
          # Python's default is to cache bytecode; with this set every `python -m buildtools` compiles
          # its ~50 modules again (+65 ms here), which no default install does. The trees are temp copies.
          "PYTHONDONTWRITEBYTECODE")


@dataclass(frozen=True)
class BenchConfig:
    """How much to measure. ``smoke`` is the tiny size the smoke test uses (see run.py --smoke)."""

    runs: int = 5  # cheap measurements (no-op builds, one-TU edits, presets)
    cold_runs: int = 2  # full cold builds of the project (P3 kernloop, P5)
    variant_runs: int = 1  # anything compiling the torch-heavy vLLM-style TU (P1 variant, P3 naive)
    quick: bool = False  # the variant TU for one arch instead of torch's default list
    smoke: bool = False  # one arch, cold builds of one small target, no torch-heavy compile
    arch: str | None = None  # TORCH_CUDA_ARCH_LIST for the kernloop builds (None: the plan's default)
    ram_budget: str = "1.5G"  # P5's lowered budget (KERNLOOP_RAM_BUDGET)
    workdir: Path | None = None  # None: a new temporary directory
    keep: bool = False  # keep the work directory
    python: Path = Path(sys.executable)
    quick_variant_arch: str = "9.0"


@dataclass(frozen=True)
class Series:
    """N timings (or sizes) of one thing."""

    label: str
    values: tuple[float, ...]
    unit: str = "s"
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "unit": self.unit, "n": self.n, "median": self.median, "min": self.low,
                "max": self.high, "values": list(self.values), "note": self.note}


@dataclass(frozen=True)
class Target:
    """A goal from the issue, next to what was measured. ``met`` None: not measured this run."""

    goal: str
    measured: str
    met: bool | None
    reason: str = ""  # why it was missed (or not measured)

    def to_json(self) -> dict[str, Any]:
        return {"goal": self.goal, "measured": self.measured, "met": self.met, "reason": self.reason}


@dataclass(frozen=True)
class Figure:
    key: str  # "P1"
    title: str
    series: tuple[Series, ...] = ()
    ratios: tuple[tuple[str, float], ...] = ()
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = ()
    skipped: str = ""  # why the whole figure did not run

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "series": [s.to_json() for s in self.series],
                "ratios": [{"label": label, "value": value} for label, value in self.ratios],
                "targets": [t.to_json() for t in self.targets], "notes": list(self.notes), "skipped": self.skipped}


class Progress:
    """One line per step on stderr, with the time since the run started (the work is long)."""

    def __init__(self, stream: Any = None) -> None:
        self._t0 = time.monotonic()
        self._stream = stream or sys.stderr

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self._t0:7.1f}s] {message}", file=self._stream, flush=True)


def timed(argv: Sequence[str | os.PathLike[str]], *, cwd: Path, env: Mapping[str, str],
          timeout: float = 3600, what: str = "") -> tuple[float, proc.Result]:
    """Run once; (wall seconds, result). A failure is a KernloopError with the output's tail."""
    start = time.perf_counter()
    result = proc.run(argv, cwd=cwd, env=env, timeout=timeout)
    elapsed = time.perf_counter() - start
    if not result.ok:
        tail = "\n".join((result.stdout + "\n" + result.stderr).strip().splitlines()[-25:])
        raise KernloopError(f"{what or Path(str(argv[0])).name} failed (exit {result.returncode}) in {cwd}:\n{tail}",
                            "rerun with --keep to inspect the work directory")
    return elapsed, result


def series(label: str, values: Sequence[float], unit: str = "s", note: str = "") -> Series:
    return Series(label, tuple(values), unit, note)


def ratio(a: Series, b: Series) -> float:
    """median(a) / median(b)."""
    return a.median / b.median if b.median else float("inf")


def copy_tracked_tree(dest: Path, repo: Path = REPO) -> Path:
    """The tracked (and new, not ignored) files of ``repo`` -- what a commit would hold -- nothing built."""
    listing = proc.run(["git", "-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       timeout=60)
    if not listing.ok:
        raise KernloopError(f"git ls-files failed in {repo}: {listing.stderr.strip()}",
                            "run the benchmarks from a git checkout")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted(set(filter(None, listing.stdout.split("\0")))):
        src = repo / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def base_env(config: BenchConfig, *, ccache_dir: Path | None, **extra: str) -> dict[str, str]:
    """The caller's environment minus planner overrides, this Python's bin first on PATH.

    ``ccache_dir`` None keeps the caller's compiler cache (the smoke test reuses the warm one).
    """
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env["PATH"] = os.pathsep.join([str(Path(config.python).parent), env.get("PATH", "")])
    if ccache_dir is not None:
        ccache_dir.mkdir(parents=True, exist_ok=True)
        env["CCACHE_DIR"] = str(ccache_dir)
    elif "CCACHE_DIR" in os.environ:
        env["CCACHE_DIR"] = os.environ["CCACHE_DIR"]
    if config.arch:
        env["TORCH_CUDA_ARCH_LIST"] = config.arch
    env.update(extra)
    return env


@dataclass
class Counter:
    """Unique numbers for edits, so no edit is ever served from the compiler cache."""

    base: int = field(default_factory=time.time_ns)
    n: int = 0

    def next(self) -> int:
        self.n += 1
        return self.base + self.n


@contextmanager
def heartbeat(log: Progress, what: str, every: float = 60.0) -> Iterator[None]:
    """A line every ``every`` seconds while something long runs, so a quiet terminal is not a hang."""
    done = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not done.wait(every):
            log(f"  ... {what}: {time.monotonic() - start:.0f} s so far")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=1)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
