"""P2: a build when nothing changed -- ``python -m buildtools build`` vs re-running
``pip install --no-build-isolation -e .``.

Also the plain CMake form, ``cmake --build --preset release --target install`` (the ``cmake``
on PATH, as a user types it: in a venv, pip's wrapper script), run alternately with it (the pip
re-runs come after: each rewrites ``kernloop/*.so``, which the next build would then reinstall);
the goal is buildtools build <= 1.3x that. A no-op runs no detection (facts cached by stat) and
no install (the last one is still in place). All on the
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
GOAL_VS_CMAKE = 1.3  # x a plain cmake --build --preset release --target install


def run(ws: Workspace) -> Figure:
    tree = ws.kernloop_tree()
    env = ws.kernloop_env()
    ws.pip_ready(tree, env)
    n = ws.config.runs
    preset: list[float] = []
    raw: list[float] = []
    pip: list[float] = []
    for i in range(n):  # alternating, the two commands only: a pip run in between rewrites kernloop/*.so
        build = ws.kernloop_build(tree, env)
        if build.compiled:
            raise KernloopError(f"P2: the no-op build compiled {build.compiled} TUs: {build.summary.get('ran')}")
        preset.append(build.seconds)
        raw.append(ws.preset_build(tree, env))
        ws.log(f"P2 run {i + 1}/{n}: buildtools build {fmt_s(preset[-1])} "
               f"(detect {build.summary.get('steps', {}).get('detect')}, install "
               f"{build.summary.get('steps', {}).get('install')}), cmake --build --preset {fmt_s(raw[-1])}")
    for i in range(n):
        pip.append(ws.pip_editable(tree, env))
        ws.log(f"P2 pip run {i + 1}/{n}: pip -e {fmt_s(pip[-1])}")
    a = series("python -m buildtools build (nothing to do)", preset)
    r = series("cmake --build --preset release --target install", raw)
    b = series("pip install --no-build-isolation -e . (again)", pip)
    met = a.median <= GOAL_S
    vs = ratio(a, r)
    notes = []
    if ws.pip_first is not None:
        notes.append(f"first pip run on the tree (configures cmake-build-pip, all compiles cache hits): "
                     f"{fmt_s(ws.pip_first)}")
    return Figure(
        KEY, TITLE, (a, r, b),
        ratios=(("buildtools build / plain cmake --build", vs), ("pip re-run / buildtools build", ratio(b, a))),
        targets=(Target(f"no-op preset build <= {GOAL_S} s", fmt_s(a.median), met,
                        "" if met else "see the note on machine load"),
                 Target(f"<= {GOAL_VS_CMAKE}x a plain cmake --build --preset (medians, alternating)", f"{vs:.2f}x",
                        vs <= GOAL_VS_CMAKE, "" if vs <= GOAL_VS_CMAKE else
                        "Python start-up and imports (~60 ms here) next to a ~70 ms cmake wrapper")),
        notes=tuple(notes),
    )
