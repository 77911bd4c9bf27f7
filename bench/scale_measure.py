"""What bench/scale.py measures on one tree of N TUs, in the order it runs.

Each step reuses what the figures of bench/run.py do (see docs/benchmarks.md): P6's presets
command, P3's cold build (plus the children's CPU time), P2's alternating no-op pair, P1's edit
and its physical limit, PG's stale check. The rest is new here: ``build --explain`` next to a
plain no-op, the cost of the build summary over a full ninja log, and ``watch``'s reaction time.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import time
from pathlib import Path
from typing import Callable, Mapping

from buildtools.cmake import ninja
from buildtools.errors import KernloopError
from buildtools.run.result import BuildResult
from buildtools.util import proc

from . import pg_guard
from .harness import Series, fmt_s, heartbeat, series, timed
from .scale_tree import ScaleTree, generate
from .workspace import BuildRun, Workspace, edit_source

__all__ = ["measure_tree", "objects_compiled"]

Log = Callable[[str], None]
_WATCH_TIMEOUT_S = 600.0


def objects_compiled(build: BuildRun) -> int:
    """Compiled TUs of a build: the object files it wrote (the precompiled header is not a TU of
    the tree's sources, so it is left out)."""
    return sum(1 for out in build.summary.get("ran", []) if out.endswith((".o", ".obj")))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def presets(ws: Workspace, plain: Path, runs: int) -> Series:
    """P6's command on a copy of the tree nothing is built in."""
    env = ws.env(None)
    argv = [ws.python, "tools/generate_presets.py", "--force-overwrite", "--source-dir", plain]
    times = [timed(argv, cwd=plain, env=env, timeout=600, what="generate_presets")[0] for _ in range(runs)]
    return series("presets: tools/generate_presets.py --force-overwrite", times)


def cold(ws: Workspace, tree: ScaleTree, env: Mapping[str, str], label: str) -> tuple[BuildRun, float]:
    """``buildtools build`` on a tree never built; (the build, CPU seconds of every process it ran)."""
    before = _children_cpu_s()
    with heartbeat(ws.log, f"N={tree.n} cold build"):
        build = ws.kernloop_build(tree.root, env)
    cpu = _children_cpu_s() - before
    got = objects_compiled(build)
    if got != tree.n:
        raise KernloopError(f"N={tree.n}: the cold build compiled {got} TUs, not {tree.n} ({label})",
                            "is nvcc there? the generated .cu copies count towards N")
    return build, cpu


def noop(ws: Workspace, root: Path, env: Mapping[str, str], runs: int) -> tuple[Series, Series, Series]:
    """P2's alternating pair -- ``buildtools build`` and ``cmake --build --preset release --target
    install`` -- and a third, ``buildtools build --explain``, in the same rotation."""
    kl: list[float] = []
    raw: list[float] = []
    explained: list[float] = []
    ws.kernloop_build(root, env)  # not timed: the first run after a cold build still records state
    for _ in range(runs):
        for extra, into in (((), kl), (("--explain",), explained)):
            build = ws.kernloop_build(root, env, *extra)
            if build.compiled:
                raise KernloopError(f"the no-op build{' --explain' if extra else ''} compiled {build.compiled} "
                                    f"TUs: {build.summary.get('ran')}")
            into.append(build.seconds)
        raw.append(ws.preset_build(root, env))
    return (series("no-op: python -m buildtools build", kl),
            series("no-op: cmake --build --preset release --target install", raw),
            series("no-op: python -m buildtools build --explain", explained))


def edit(ws: Workspace, tree: ScaleTree, env: Mapping[str, str], runs: int) -> tuple[Series, Series]:
    """P1 on the tree's edit TU: edit -> ``buildtools build`` (one TU, the link, the install), then
    the physical limit on the same edit -- the TU's own compile command, the link, one copy of the
    module (what an install cannot do without)."""
    build_dir = ws.build_dir(tree.root)
    kl: list[float] = []
    alone: list[float] = []
    for _ in range(runs):
        edit_source(tree.root / tree.edit_tu, ws.edits.next())
        build = ws.kernloop_build(tree.root, env)
        objs = [o for o in build.summary.get("ran", []) if o.endswith(".o")]
        if len(objs) != 1 or not objs[0].endswith(f"{tree.edit_tu}.o"):
            raise KernloopError(f"N={tree.n}: the edit of {tree.edit_tu} rebuilt {objs}, not that one TU")
        module = next((t for t in build.summary.get("linked", []) if Path(t).name.startswith(f"{tree.edit_module}.")),
                      None)
        if module is None:
            raise KernloopError(f"N={tree.n}: the edit of {tree.edit_tu} linked {build.summary.get('linked')}")
        kl.append(build.seconds)
        seconds = ws.physical_limit(build_dir, tree.edit_tu, module)
        probe = build_dir / "scale-install-probe"
        probe.mkdir(exist_ok=True)
        start = time.perf_counter()
        shutil.copy2(build_dir / module, probe / Path(module).name)
        alone.append(seconds + time.perf_counter() - start)
    return (series(f"edit {Path(tree.edit_tu).name}: python -m buildtools build", kl),
            series("edit: that TU's compile + link + install copy, alone", alone))


def import_guard(tree: ScaleTree, torch: str | None) -> Series:
    """PG: the stale check of ``import kernloop`` on the freshly built tree (its worst case)."""
    stale = pg_guard.load_stale(tree.root)
    package = str(tree.root / "kernloop")
    reason = stale.stale_reason(package, torch)
    if reason:
        raise KernloopError(f"N={tree.n}: the built tree reads as stale to import kernloop: {reason}")
    entries = len(json.loads((tree.root / "kernloop" / stale.STAMP_NAME).read_text())["inputs"])
    return series(f"import guard: stale check ({entries} stamp entries)", pg_guard.time_ms(stale.stale_reason,
                                                                                         package, torch), unit="ms")


def summary_cost(tree: ScaleTree, runs: int) -> Series:
    """What the build's summary costs when everything ran: read ``.ninja_log`` twice (before and
    after, as a build does), diff, render the text and the JSON -- in this process."""
    log = tree.root / "cmake-build-release" / ".ninja_log"
    times = []
    for _ in range(max(runs, 5)):
        start = time.perf_counter()
        before, after = ninja.read_log(log), ninja.read_log(log)
        ran = tuple(ninja.ran_between({}, after))
        result = BuildResult(True, "release", log.parent, log.parent / "build.log", 0.0, ("build: all",), ran)
        result.summary()
        json.dumps(result.to_json())
        times.append((time.perf_counter() - start) * 1000)
        del before
    return series(f"summary of a full build ({len(ran)} ninja log entries)", times, unit="ms")


def _wait_for(log: Path, offset: int, needles: tuple[str, ...], what: str) -> tuple[float, int, str]:
    """Poll ``log`` from ``offset`` until a line holds one of ``needles``; (when, new offset, line)."""
    deadline = time.monotonic() + _WATCH_TIMEOUT_S
    while time.monotonic() < deadline:
        data = log.read_bytes()
        text = data[offset:].decode(errors="replace")
        for line in text.splitlines(keepends=True):
            offset += len(line.encode())
            if line.endswith("\n") and any(n in line for n in needles):
                return time.perf_counter(), offset, line.strip()
            if not line.endswith("\n"):
                offset -= len(line.encode())  # half a line: read it again when it is complete
                break
        time.sleep(0.005)
    raise KernloopError(f"watch: no {what} within {_WATCH_TIMEOUT_S:.0f} s (see {log})")


def _stop(pid: int) -> None:
    """Ctrl-C, as a user stops it; SIGKILL only if it has not gone after 30 s."""
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            return
        if done:
            return
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def watch(ws: Workspace, tree: ScaleTree, env: Mapping[str, str], runs: int, log_dir: Path) -> Series:
    """``python -m buildtools watch --no-initial`` on the built tree: per run, edit the edit TU and
    time until watch prints ``changed:``, the line it writes as it starts the build (its quiet
    period, --quiet-ms 300 by default, is part of it); then let that build finish."""
    log = log_dir / f"watch-{tree.n}.log"
    argv = [ws.python, "-m", "buildtools", "watch", "--no-initial", "--no-progress", "--source-dir", tree.root]
    pid = proc.spawn(argv, log=log, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tree.root)
    times = []
    try:
        _, offset, _ = _wait_for(log, 0, ("watching ",), "'watching' line")
        for _ in range(runs):
            edit_source(tree.root / tree.edit_tu, ws.edits.next())
            start = time.perf_counter()
            seen, offset, _ = _wait_for(log, offset, ("changed: ",), "'changed:' line after an edit")
            times.append(seen - start)
            _, offset, line = _wait_for(log, offset, ("built in ", "FAILED", "error:"), "end of the build")
            if not line.startswith("built in "):
                raise KernloopError(f"watch: the build after an edit failed: {line} (see {log})")
            _, offset, _ = _wait_for(log, offset, ("watching ",), "'watching' line after the build")
    finally:
        _stop(pid)
    return series("watch: save -> build start ('changed:' printed)", times)


def measure_tree(ws: Workspace, tree: ScaleTree, plain: Path, *, runs: int, cold_runs: int,
                 cold_env: Callable[[str], dict[str, str]], label: str, torch: str | None) -> dict[str, object]:
    """Every measurement at one N; the cold build's first run leaves the tree built for the rest."""
    n, log = tree.n, ws.log
    out: dict[str, object] = {"n": n, "generated": len(tree.generated), "edit_tu": tree.edit_tu}
    log(f"N={n}: presets x{runs}")
    out["presets"] = presets(ws, plain, runs)
    walls, cpus, compiled, env = [], [], [], cold_env(f"n{n}")
    for i in range(cold_runs):  # the first on the tree itself; each later one on a new copy, cache empty
        this = tree if i == 0 else generate(ws.fresh_tree(f"n{n}-cold"), n)
        build, cpu = cold(ws, this, env if i == 0 else cold_env(f"n{n}-{i}"), label)
        walls.append(build.seconds)
        cpus.append(cpu)
        compiled.append(objects_compiled(build))
        log(f"N={n}: cold build {i + 1}/{cold_runs}: {fmt_s(build.seconds)} wall, {cpu:.0f} CPU-s, "
            f"{objects_compiled(build)} TUs, {build.cache}")
    out["cold_wall"] = series(f"cold build: python -m buildtools build ({label})", walls)
    out["cold_cpu"] = series("cold build: CPU-seconds (children's user+sys)", cpus, unit="cpu-s")
    out["compiled"] = compiled[0]  # object files in the first cold build's ninja log (checked == n)
    # Not timed: both modules load (every copy's symbols resolved) and an op runs.
    out["imported"] = ws.import_check(tree.root, env)
    log(f"N={n}: import kernloop: _C loaded from {out['imported']}")
    log(f"N={n}: no-op x{runs} (buildtools build, --explain, cmake --build --preset, alternating)")
    out["noop_build"], out["noop_cmake"], out["noop_explain"] = noop(ws, tree.root, env, runs)
    log(f"N={n}: edit {tree.edit_tu} x{runs}")
    out["edit_build"], out["edit_alone"] = edit(ws, tree, env, runs)
    ws.kernloop_build(tree.root, env)  # after the probes' relink: a no-op that leaves the stamp fresh
    out["guard"] = import_guard(tree, torch)
    out["summary"] = summary_cost(tree, runs)
    log(f"N={n}: watch x{runs}")
    out["watch"] = watch(ws, tree, env, runs, ws.root)
    return out
