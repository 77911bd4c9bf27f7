"""P1g: edit the torch glue ``csrc/ops.cpp`` -> installed, with the precompiled torch headers
(KERNLOOP_PCH, the default) and without.

On the kernloop tree and a second build dir of it configured with ``-DKERNLOOP_PCH=OFF``
(built once beforehand), each run makes one real edit of the glue (a new constant: the compiler
cache misses) and builds it in both dirs, alternating which goes first:
``cmake --build <dir> --target install`` -- the same command, the same edit, only the PCH
differs. Then, after another edit, ``python -m buildtools build`` (the loop command).
"""
from __future__ import annotations

from .harness import Figure, Target, fmt_s, ratio, series
from .workspace import Workspace, edit_source

__all__ = ["KEY", "TITLE", "run"]

KEY = "P1g"
GLUE_TU = "csrc/ops.cpp"
TITLE = f"edit the torch glue {GLUE_TU} -> installed: precompiled torch headers vs KERNLOOP_PCH=OFF"
GOAL = 0.5


def run(ws: Workspace) -> Figure:
    tree = ws.kernloop_tree()
    env = ws.kernloop_env()
    on = ws.build_dir(tree)
    off = ws.pch_off_dir(tree, env)
    glue = tree / GLUE_TU
    with_pch: list[float] = []
    without: list[float] = []
    loop: list[float] = []
    for i in range(ws.config.runs):
        edit_source(glue, ws.edits.next())
        order = [(on, with_pch), (off, without)]
        for build_dir, out in order if i % 2 == 0 else order[::-1]:
            out.append(ws.build_target(build_dir, env, "install"))
        edit_source(glue, ws.edits.next())
        loop.append(ws.kernloop_build(tree, env).seconds)
        ws.log(f"P1g run {i + 1}/{ws.config.runs}: PCH {fmt_s(with_pch[-1])}, KERNLOOP_PCH=OFF {fmt_s(without[-1])}, "
               f"buildtools build {fmt_s(loop[-1])}")
    ws.kernloop_build(tree, env)  # leave the tree installed from its own build dir
    a = series("cmake --build cmake-build-release --target install (PCH)", with_pch)
    b = series("cmake --build cmake-build-nopch --target install (KERNLOOP_PCH=OFF)", without)
    c = series("python -m buildtools build (PCH)", loop)
    r = ratio(a, b)
    return Figure(
        KEY, TITLE, (a, b, c),
        ratios=(("PCH / KERNLOOP_PCH=OFF", r),),
        targets=(Target(f"<= {GOAL}x the same edit with KERNLOOP_PCH=OFF", f"{r:.2f}x", r <= GOAL,
                        "" if r <= GOAL else "what is left is ops.cpp's own template instantiation and code "
                        "generation (-O3), which a GCC precompiled header does not keep"),),
        notes=("the PCH holds csrc/torch_pch.h (Python.h, ATen/core/Tensor.h, torch/library.h, c10/cuda); "
               "_moe_C reuses _C's",),
    )
