"""A simulation, not a measurement: the wall time of a cold build with K remote CPUs.

Input: the cold build's ``.ninja_log`` (each edge's duration) and its dependencies (``ninja -t
query`` of each link: which objects it waits for). Compiles go to K remote CPUs, each paying the
measured per-TU overhead of distribution; links stay local, on the plan's link slots. Scheduling
is list scheduling with the longest remaining path first (what a good ``-j`` does with a deep
queue). Beside it, the two lower bounds no schedule can beat: the critical path and the total
compile CPU-seconds / K.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from buildtools.cmake import ninja
from buildtools.util import proc

__all__ = ["Task", "Projection", "tasks_from_build", "simulate", "project", "KS"]

KS = (2, 8, 16, 64, 256)


@dataclass(frozen=True)
class Task:
    name: str
    seconds: float
    deps: tuple[str, ...] = ()
    local: bool = False  # a link: runs here, not on the cluster


@dataclass(frozen=True)
class Projection:
    k: int
    simulated_s: float  # build part only (configure not included)
    critical_path_s: float
    cpu_bound_s: float  # compile CPU-seconds / K
    configure_s: float

    @property
    def bound_s(self) -> float:
        return max(self.critical_path_s, self.cpu_bound_s)

    @property
    def total_s(self) -> float:
        return self.simulated_s + self.configure_s

    @property
    def goal_s(self) -> float:
        """The issue's goal: 1.2 x max(critical path, CPU-s / K) + configure."""
        return 1.2 * self.bound_s + self.configure_s

    @property
    def met(self) -> bool:
        return self.total_s <= self.goal_s + 1e-9


def _query_inputs(ninja_program: str, build_dir: Path, output: str) -> list[str]:
    res = proc.try_run([ninja_program, "-C", build_dir, "-t", "query", output], timeout=60)
    if res is None or not res.ok:
        return []
    inputs: list[str] = []
    section = None
    for line in res.stdout.splitlines():
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("    "):
            section = stripped.split(":")[0]
        elif section == "input" and line.startswith("    "):
            inputs.append(stripped.lstrip("|").strip())
    return inputs


def tasks_from_build(build_dir: Path, ninja_program: str = "ninja") -> list[Task]:
    """The build's edges from its ``.ninja_log`` (the last run of each), links with their inputs."""
    entries = ninja.read_log(Path(build_dir) / ".ninja_log")
    tasks = []
    for output, entry in entries.items():
        is_link = not ninja.is_translation_unit(output)
        deps = tuple(d for d in _query_inputs(ninja_program, Path(build_dir), output) if d in entries and d != output) \
            if is_link else ()
        tasks.append(Task(output, entry.duration_ms / 1000, deps, local=is_link))
    return tasks


def _bottom_levels(tasks: Mapping[str, Task], overhead_s: float) -> dict[str, float]:
    succ: dict[str, list[str]] = {name: [] for name in tasks}
    for t in tasks.values():
        for d in t.deps:
            succ[d].append(t.name)
    level: dict[str, float] = {}

    def bl(name: str) -> float:
        if name not in level:
            t = tasks[name]
            level[name] = t.seconds + (0 if t.local else overhead_s) + max((bl(s) for s in succ[name]), default=0.0)
        return level[name]

    for name in tasks:
        bl(name)
    return level


def critical_path(tasks: Sequence[Task]) -> float:
    by_name = {t.name: t for t in tasks}
    return max(_bottom_levels(by_name, 0.0).values(), default=0.0)


def simulate(tasks: Sequence[Task], k: int, *, link_slots: int = 1, overhead_s: float = 0.0) -> float:
    """Wall seconds of the build with ``k`` remote CPUs for compiles (each + ``overhead_s``) and
    ``link_slots`` local slots for links. Pure."""
    by_name = {t.name: t for t in tasks}
    priority = _bottom_levels(by_name, overhead_s)
    waiting = {t.name: set(t.deps) for t in tasks}
    free = {"remote": k, "local": link_slots}
    ready: list[tuple[float, str]] = [(-priority[n], n) for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (finish time, name)
    now, done = 0.0, 0
    blocked: list[tuple[float, str]] = []
    while done < len(tasks):
        while ready:
            prio, name = heapq.heappop(ready)
            pool = "local" if by_name[name].local else "remote"
            if free[pool] == 0:
                blocked.append((prio, name))
                continue
            free[pool] -= 1
            t = by_name[name]
            heapq.heappush(running, (now + t.seconds + (0 if t.local else overhead_s), name))
        for item in blocked:
            heapq.heappush(ready, item)
        blocked.clear()
        if not running:
            raise ValueError("the dependency graph has a cycle or a missing task")
        now, name = heapq.heappop(running)
        free["local" if by_name[name].local else "remote"] += 1
        done += 1
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, (-priority[other], other))
    return now


def project(tasks: Sequence[Task], *, overhead_s: float, configure_s: float, link_slots: int = 1,
            ks: Iterable[int] = KS) -> list[Projection]:
    cp = critical_path(tasks)
    cpu = sum(t.seconds for t in tasks if not t.local)
    return [Projection(k, simulate(tasks, k, link_slots=link_slots, overhead_s=overhead_s), cp, cpu / k, configure_s)
            for k in ks]
