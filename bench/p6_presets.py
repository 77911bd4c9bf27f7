"""P6: presets generation vs ``python -c "import torch"``.

``python tools/generate_presets.py --force-overwrite`` detects the toolchain and machine (torch is
read from its files, never imported), plans and writes CMakeUserPresets.json. The yardstick is the
cost of merely importing torch; ``python -c pass`` shows the interpreter's own start-up. The three
commands run interleaved, N times each, on a copy of the tree.
"""
from __future__ import annotations

from .harness import Figure, Target, fmt_s, ratio, series, timed
from .workspace import Workspace

__all__ = ["KEY", "TITLE", "run"]

KEY = "P6"
TITLE = "presets generation vs python -c \"import torch\""
GOAL_S = 0.5


def run(ws: Workspace) -> Figure:
    tree = ws.plain_tree()
    env = ws.env(None)
    py = ws.python
    commands = {
        "presets": [py, "tools/generate_presets.py", "--force-overwrite", "--source-dir", tree],
        "torch": [py, "-c", "import torch"],
        "pass": [py, "-c", "pass"],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    n = ws.config.runs
    for i in range(n):
        for name, argv in commands.items():
            seconds, _ = timed(argv, cwd=tree, env=env, timeout=600, what=name)
            times[name].append(seconds)
        ws.log(f"P6 run {i + 1}/{n}: presets {fmt_s(times['presets'][-1])}, import torch {fmt_s(times['torch'][-1])}")
    presets = series("python tools/generate_presets.py --force-overwrite", times["presets"])
    torch = series('python -c "import torch"', times["torch"])
    bare = series('python -c "pass" (interpreter start-up)', times["pass"])
    met = presets.median <= GOAL_S
    return Figure(
        KEY, TITLE, (presets, torch, bare),
        ratios=(("import torch / presets", ratio(torch, presets)),),
        targets=(Target(f"presets generation <= {GOAL_S} s", fmt_s(presets.median), met,
                        "" if met else "detection runs nvcc (-dryrun, --version, --list-gpu-arch) and the tools' "
                        "--version; on a loaded 2-core machine those subprocesses dominate"),),
    )
