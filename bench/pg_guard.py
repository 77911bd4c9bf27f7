"""PG: the stale check of ``import kernloop`` -- what it costs on every import.

On the kernloop tree after a build: ``kernloop/_stale.py``'s ``stale_reason`` (what ``import
kernloop`` runs before loading the modules: read the stamp, stat what it lists) timed in this
process, with the tree fresh and then with one source touched (the check stops at the first
change, so fresh is the worst case). Loaded by path: importing the package would load torch.
"""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

from .harness import Figure, Target, series
from .workspace import Workspace

__all__ = ["KEY", "TITLE", "run", "load_stale", "time_ms"]

KEY = "PG"
TITLE = "import kernloop's stale check (stamp + stat, before the modules load)"
GOAL_MS = 5.0
CALLS = 200


def time_ms(fn, *args) -> list[float]:
    """Milliseconds of each of CALLS calls of ``fn(*args)``."""
    out = []
    for _ in range(CALLS):
        start = time.perf_counter()
        fn(*args)
        out.append((time.perf_counter() - start) * 1000)
    return out


def load_stale(tree: Path) -> ModuleType:
    """The tree's ``kernloop/_stale.py``, loaded by path (importing the package would load torch)."""
    spec = importlib.util.spec_from_file_location("kernloop_stale_bench", tree / "kernloop" / "_stale.py")
    stale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stale)
    return stale


def run(ws: Workspace) -> Figure:
    tree = ws.kernloop_tree()
    env = ws.kernloop_env()
    ws.kernloop_build(tree, env)  # fresh: the stamp describes the installed modules
    stale = load_stale(tree)
    package = str(tree / "kernloop")
    torch = (ws.plan_json()["facts"].get("torch") or {}).get("version")
    entries = len(__import__("json").loads((tree / "kernloop" / stale.STAMP_NAME).read_text())["inputs"])
    fresh_reason = stale.stale_reason(package, torch)
    fresh = time_ms(stale.stale_reason, package, torch)
    touched = tree / "csrc" / "ops.cpp"
    os.utime(touched)
    stale_reason = stale.stale_reason(package, torch)
    stale_ms = time_ms(stale.stale_reason, package, torch)
    ws.kernloop_build(tree, env)
    a = series(f"fresh tree ({entries} stamp entries stat'ed)", fresh, unit="ms")
    b = series("after touching csrc/ops.cpp (stops at the first change)", stale_ms, unit="ms")
    met = a.median <= GOAL_MS and b.median <= GOAL_MS
    return Figure(
        KEY, TITLE, (a, b),
        ratios=(("stale / fresh", b.median / a.median if a.median else float("inf")),),
        targets=(Target(f"<= {GOAL_MS:g} ms per import", f"{max(a.median, b.median):.2f} ms", met),),
        notes=(f"verdicts: fresh {fresh_reason!r}, touched {stale_reason!r}; {CALLS} calls each",),
    )
