"""P2: a build when nothing changed -- ``python -m buildtools build`` vs re-running
``pip install --no-build-isolation -e .``.

Also the plain CMake form, ``cmake --build --preset release --target install``. All on the
kernloop tree after its first build (the first pip run, which configures its own build
directory, is done beforehand and reported separately). Each no-op preset build is checked to
have compiled nothing.
"""
from __future__ import annotations

from buildtools.errors import KernloopError

from .harness import Figure, Target, fmt_s, ratio, series
from .workspace import Workspace

__all__ = ["KEY", "TITLE", "run"]

KEY = "P2"
TITLE = "no-op build: preset build vs pip editable re-run"
GOAL_S = 0.5


def run(ws: Workspace) -> Figure:
    tree = ws.kernloop_tree()
    env = ws.kernloop_env()
    ws.pip_ready(tree, env)
    n = ws.config.runs
    preset: list[float] = []
    raw: list[float] = []
    pip: list[float] = []
    for i in range(n):
        build = ws.kernloop_build(tree, env)
        if build.compiled:
            raise KernloopError(f"P2: the no-op build compiled {build.compiled} TUs: {build.summary.get('ran')}")
        preset.append(build.seconds)
        raw.append(ws.preset_build(tree, env))
        pip.append(ws.pip_editable(tree, env))
        ws.log(f"P2 run {i + 1}/{n}: buildtools build {fmt_s(preset[-1])}, cmake --build --preset "
               f"{fmt_s(raw[-1])}, pip -e {fmt_s(pip[-1])}")
    a = series("python -m buildtools build (nothing to do)", preset)
    r = series("cmake --build --preset release --target install", raw)
    b = series("pip install --no-build-isolation -e . (again)", pip)
    met = a.median <= GOAL_S
    notes = []
    if ws.pip_first is not None:
        notes.append(f"first pip run on the tree (configures cmake-build-pip, all compiles cache hits): "
                     f"{fmt_s(ws.pip_first)}")
    return Figure(
        KEY, TITLE, (a, r, b),
        ratios=(("pip re-run / buildtools build", ratio(b, a)),),
        targets=(Target(f"no-op preset build <= {GOAL_S} s", fmt_s(a.median), met,
                        "" if met else "see the note on machine load"),),
        notes=tuple(notes),
    )
