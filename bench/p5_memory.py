"""P5: peak memory of the concurrent compiles under a lowered RAM budget, vs that budget.

A cold build (fresh copy, empty cache) with ``KERNLOOP_RAM_BUDGET=<--ram-budget>``: the planner
sizes jobs and pools from that budget instead of the free RAM. While it runs, /proc is sampled
for every process under ninja (bench/memory.py): the summed resident set, and the summed per-process
peaks (an upper bound, the number held against the budget).
"""
from __future__ import annotations

from buildtools.model import GIB
from buildtools.settings import Overrides

from .harness import Figure, Target, fmt_s, heartbeat, series
from .memory import sample_while
from .workspace import SMOKE_TARGET, Workspace

__all__ = ["KEY", "TITLE", "run"]

KEY = "P5"
TITLE = "peak RSS of concurrent compiles under a lowered RAM budget"


def run(ws: Workspace) -> Figure:
    text = ws.config.ram_budget
    override = Overrides.from_sources(ram_budget=text).ram_budget
    assert override is not None
    budget = override.value
    extra = ("--target", SMOKE_TARGET) if ws.config.smoke else ()
    hwm: list[float] = []
    rss: list[float] = []
    plans: list[str] = []
    heaviest: tuple[str, int] = ("", 0)
    procs = 0
    for i in range(ws.config.cold_runs if not ws.config.smoke else 1):
        tree = ws.fresh_tree("memory")
        env = ws.cold_env("memory", KERNLOOP_RAM_BUDGET=text)
        plan = ws.plan_json(tree, env)["plan"]
        jobs, per_job = plan["jobs"]["value"], plan["ram_per_job_gib"]["value"]
        plans.append(f"jobs {jobs} ({plan['jobs']['reason']}), link jobs {plan['link_jobs']['value']}; "
                     f"estimate {jobs} x {per_job:g} GiB = {jobs * per_job:g} GiB")
        ws.log(f"P5 run {i + 1}: cold build with KERNLOOP_RAM_BUDGET={text}: {plans[-1]}")
        with heartbeat(ws.log, "P5 cold build"):
            build, peak, seconds = sample_while(lambda: ws.kernloop_build(tree, env, *extra),
                                                build_dir=ws.build_dir(tree))
        hwm.append(peak.hwm_bytes / GIB)
        rss.append(peak.rss_bytes / GIB)
        procs = max(procs, peak.max_concurrent)
        if peak.heaviest[1] > heaviest[1]:
            heaviest = peak.heaviest
        ws.log(f"P5 run {i + 1}: {fmt_s(seconds)}, peak summed RSS {rss[-1]:.2f} GiB, summed peaks "
               f"{hwm[-1]:.2f} GiB, {peak.samples} samples")
    a = series("summed per-process peaks (VmHWM) under ninja: upper bound", hwm, unit="GiB")
    b = series("summed resident set (VmRSS) under ninja, sampled every 50 ms", rss, unit="GiB")
    c = series(f"budget (KERNLOOP_RAM_BUDGET={text})", [budget / GIB], unit="GiB")
    worst = max(hwm) if hwm else float("nan")
    met = worst <= budget / GIB
    return Figure(
        KEY, TITLE, (a, b, c),
        ratios=(("worst upper bound / budget", worst / (budget / GIB)),),
        targets=(Target("never above the budget", f"max {worst:.2f} GiB vs {budget / GIB:.2f} GiB", met,
                        "" if met else "a TU needs more than the per-job estimate in [tool.buildtools]; "
                        "re-measure ram-per-*-job-gib"),),
        notes=(f"plan: {plans[0]}" if plans else "plan: -",
               f"heaviest single process: {heaviest[0]} {heaviest[1] / GIB:.2f} GiB; most processes under "
               f"ninja at once: {procs}"),
    )
