"""The machine, and the figures as text (what run.py prints) or JSON (--json)."""
from __future__ import annotations

import datetime as _dt
import os
import platform
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import psutil

from buildtools.util import proc

from .harness import REPO, BenchConfig, Figure, Series

__all__ = ["Machine", "machine_from_facts", "render_text", "to_json"]


@dataclass(frozen=True)
class Machine:
    cores: str
    ram: str
    nvcc: str
    torch: str
    gpu: str
    tools: str
    python: str
    commit: str
    date: str
    load_start: str
    load_end: str = ""

    def lines(self) -> list[str]:
        return [
            f"machine: {platform.node() or 'host'}, {self.cores}, RAM {self.ram}",
            f"  nvcc {self.nvcc}; torch {self.torch}; GPU: {self.gpu}",
            f"  {self.tools}; Python {self.python}",
            f"  load average (1/5/15 min) at start {self.load_start}" + (f", at end {self.load_end}" if self.load_end else ""),
            f"  checkout {self.commit}, {self.date}",
        ]


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _prog(facts: Mapping[str, Any], name: str) -> str:
    p = facts.get(name) or {}
    return f"{name} {p.get('version') or '?'}" if p else f"{name} -"


def machine_from_facts(facts: Mapping[str, Any]) -> Machine:
    cpus = facts.get("cpus") or {}
    nvcc = facts.get("nvcc") or {}
    torch = facts.get("torch") or {}
    gpus = facts.get("gpus") or {}
    vm = psutil.virtual_memory()
    head = proc.try_run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], timeout=30)
    dirty = proc.try_run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], timeout=30)
    commit = (head.stdout.strip() if head and head.ok else "?") + (" (+ local changes)" if dirty and dirty.stdout.strip() else "")
    gcc = proc.try_run(["c++", "-dumpfullversion"], timeout=30)
    return Machine(
        cores=f"{cpus.get('usable', '?')} usable cores ({cpus.get('source', '?')}; os.cpu_count() {os.cpu_count()})",
        ram=f"{vm.total / 1024**3:.1f} GiB total, {vm.available / 1024**3:.1f} GiB available at start",
        nvcc=f"{nvcc.get('version', 'not found')} ({nvcc.get('path', '-')})" if nvcc else "not found",
        torch=f"{torch.get('version', 'not found')}" if torch else "not found",
        gpu=", ".join(gpus.get("names") or []) or str(gpus.get("source", "none")),
        tools=", ".join([_prog(facts, "cmake"), _prog(facts, "ninja"), _prog(facts, "ccache"),
                         f"c++ {gcc.stdout.strip() if gcc and gcc.ok else '?'}"]),
        python=platform.python_version(),
        commit=commit,
        date=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        load_start=_load(),
    )


def _num(value: float, unit: str) -> str:
    if value != value:  # nan
        return "-"
    if unit == "s":
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:.2f}"


def _row(s: Series, width: int) -> str:
    spread = f"{_num(s.low, s.unit)}–{_num(s.high, s.unit)}" if s.n > 1 else "(1 run)"
    line = f"  {s.label:<{width}} {_num(s.median, s.unit):>8} {s.unit:<3} {spread:>15}  n={s.n}"
    return line + (f"\n  {'':<{width}}   {s.note}" if s.note else "")


def render_figure(fig: Figure) -> list[str]:
    lines = [f"{fig.key}  {fig.title}"]
    if fig.skipped:
        return lines + [f"  {fig.skipped}"]
    width = max([len(s.label) for s in fig.series] + [20])
    lines.append(f"  {'what':<{width}} {'median':>8} {'':<3} {'min–max':>15}")
    lines += [_row(s, width) for s in fig.series]
    if fig.ratios:
        lines.append("  ratios: " + "; ".join(f"{label} = {value:.2f}x" for label, value in fig.ratios))
    for t in fig.targets:
        mark = {True: "met", False: "MISSED", None: "not measured"}[t.met]
        lines.append(f"  target [{mark}] {t.goal}: {t.measured}" + (f" -- {t.reason}" if t.reason else ""))
    lines += [f"  note: {n}" for n in fig.notes]
    return lines


def render_text(machine: Machine, config: BenchConfig, figures: Sequence[Figure], elapsed: float) -> str:
    settings = (f"settings: runs={config.runs}, cold-runs={config.cold_runs}, variant-runs={config.variant_runs}, "
                f"quick={'yes' if config.quick else 'no'}, smoke={'yes' if config.smoke else 'no'}, "
                f"ram-budget={config.ram_budget}, kernloop archs: {config.arch or 'the plan default'}")
    out = ["kernloop benchmarks (median of n runs, min–max; ratios of medians)", *machine.lines(), settings, ""]
    for fig in figures:
        out += render_figure(fig) + [""]
    out.append(f"total wall time {elapsed / 60:.1f} min")
    return "\n".join(out)


def to_json(machine: Machine, config: BenchConfig, figures: Sequence[Figure], elapsed: float) -> dict[str, Any]:
    cfg = {k: (str(v) if v is not None and not isinstance(v, (int, float, bool, str)) else v)
           for k, v in config.__dict__.items()}
    return {"machine": machine.__dict__, "config": cfg, "elapsed_s": elapsed,
            "figures": [f.to_json() for f in figures]}
