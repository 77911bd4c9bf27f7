"""Peak memory of the compiles running under ninja, sampled from /proc while a build runs.

Every ``interval`` seconds: find the ninja processes among this process's descendants, take every
process below them (compiler drivers, cc1plus, cicc, ptxas, ccache, linkers) and sum

- ``VmRSS`` -- what is resident right now (the sampled concurrent total), and
- ``VmHWM`` -- each live process's own peak so far, which also covers a spike between two samples.
  Summing peaks that did not happen at the same time overstates the total, so this is an upper
  bound, and it is the number compared with the budget.

Both count shared pages (libraries) once per process, which also errs on the high side.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import psutil

__all__ = ["MemoryPeak", "TreeSampler", "sample_while"]

KIB = 1024
T = TypeVar("T")


@dataclass(frozen=True)
class MemoryPeak:
    rss_bytes: int  # max over samples of the summed VmRSS
    hwm_bytes: int  # max over samples of the summed VmHWM (upper bound)
    max_concurrent: int  # most processes under ninja at one sample
    samples: int
    heaviest: tuple[str, int]  # (command name, its own VmHWM) of the heaviest single process


def _status(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in bytes, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    rss = hwm = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * KIB
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * KIB
    return rss, hwm


class TreeSampler(threading.Thread):
    """Samples the processes under every ninja below ``root_pid`` until :meth:`stop`.

    ``build_dir``: only a ninja running there counts (CMake's configure-time try_compile runs ninja
    in scratch directories; those are not the build's compile jobs)."""

    def __init__(self, root_pid: int, interval: float = 0.05, build_dir: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        self.build_dir = Path(build_dir).resolve() if build_dir is not None else None
        self._stop_event = threading.Event()
        self._rss = self._hwm = self._conc = self._samples = 0
        self._heaviest: tuple[str, int] = ("", 0)

    def run(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            self._sample(root)
            self._stop_event.wait(self.interval)

    def _sample(self, root: psutil.Process) -> None:
        try:
            procs = root.children(recursive=True)
        except psutil.Error:
            return
        under: dict[int, psutil.Process] = {}
        for p in procs:
            try:
                if p.name() == "ninja" and (self.build_dir is None or Path(p.cwd()).resolve() == self.build_dir):
                    for c in p.children(recursive=True):
                        under[c.pid] = c
            except psutil.Error:
                continue
        if not under:
            return
        rss = hwm = 0
        for pid, p in under.items():
            status = _status(pid)
            if status is None:
                continue
            rss += status[0]
            hwm += status[1]
            if status[1] > self._heaviest[1]:
                try:
                    self._heaviest = (p.name(), status[1])
                except psutil.Error:
                    pass
        self._samples += 1
        self._rss = max(self._rss, rss)
        self._hwm = max(self._hwm, hwm)
        self._conc = max(self._conc, len(under))

    def stop(self) -> MemoryPeak:
        self._stop_event.set()
        self.join(timeout=5)
        return MemoryPeak(self._rss, self._hwm, self._conc, self._samples, self._heaviest)


def sample_while(fn: Callable[[], T], interval: float = 0.05,
                 build_dir: Path | None = None) -> tuple[T, MemoryPeak, float]:
    """Run ``fn()`` (which starts the build as a child of this process) while sampling;
    (its result, the peak, wall seconds)."""
    sampler = TreeSampler(os.getpid(), interval, build_dir)
    sampler.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        peak = sampler.stop()
    return result, peak, time.perf_counter() - start
