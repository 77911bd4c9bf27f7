"""P4: a full build after ``rm -rf cmake-build-release``, with the compiler cache warm, vs cold.

On the kernloop tree: delete the build directory, then ``python -m buildtools build`` (configure,
every TU from ccache, links, install), N times. "Cold" is the same command on a fresh copy with an
empty cache: P3's kernloop runs when P3 ran in this invocation, else the tree's own first build.
"""
from __future__ import annotations

import shutil

from buildtools.errors import KernloopError

from .harness import Figure, Target, fmt_s, series
from .workspace import Workspace

__all__ = ["KEY", "TITLE", "run"]

KEY = "P4"
TITLE = "build after deleting the build dir, warm compiler cache vs cold"
GOAL = 0.15


def run(ws: Workspace) -> Figure:
    tree = ws.kernloop_tree()
    env = ws.kernloop_env()
    n = ws.config.runs
    warm: list[float] = []
    hits: list[str] = []
    for i in range(n):
        shutil.rmtree(ws.build_dir(tree))
        build = ws.kernloop_build(tree, env)
        cache = build.summary.get("cache") or {}
        if cache.get("misses"):
            raise KernloopError(f"P4: {cache.get('misses')} compiler-cache misses after rm -rf of the build dir")
        warm.append(build.seconds)
        hits.append(build.cache)
        ws.log(f"P4 run {i + 1}/{n}: {fmt_s(build.seconds)} ({build.cache})")
    cold_values = list(ws.cold_kernloop) or ([ws.first_build.seconds] if ws.first_build else [])
    a = series("rm -rf cmake-build-release; python -m buildtools build (warm ccache)", warm,
               note=f"cache: {hits[0] if hits else '?'} per run")
    b = series("cold: the same on a fresh copy, empty cache" + (" (smoke: warm)" if ws.config.smoke else ""),
               cold_values, note="from P3" if ws.cold_kernloop else "the tree's first build")
    share = a.median / b.median if b.median else float("inf")
    met = share <= GOAL
    return Figure(
        KEY, TITLE, (a, b),
        ratios=(("warm / cold", share),),
        targets=(Target(f"warm <= {GOAL:.0%} of cold", f"{share:.1%}", met,
                        "" if met else "configure and the links are not cached and stay in the warm build"),),
    )
