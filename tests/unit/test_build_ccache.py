"""Compiler-cache stats and environment (real ccache for the per-build stats log)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools.cache import launcher as ccache


def test_launcher_kind():
    assert ccache.launcher_kind("/venv/bin/ccache") == "ccache"
    assert ccache.launcher_kind("/usr/bin/sccache") == "sccache"
    assert ccache.launcher_kind("ccache;--foo") == "ccache"
    assert ccache.launcher_kind("/usr/bin/distcc") is None
    assert ccache.launcher_kind("") is None and ccache.launcher_kind(None) is None


def test_launcher_env_pins_base_dir_to_the_source(tmp_path: Path):
    env = ccache.launcher_env("ccache", tmp_path)
    assert env == {"CCACHE_BASEDIR": str(tmp_path), "CCACHE_NOHASHDIR": "true"}
    assert ccache.launcher_env(None, tmp_path) == {}


def test_ccache_counters_to_hits_misses():
    stats = ccache.parse_ccache_counters(
        {"direct_cache_hit": 3, "preprocessed_cache_hit": 1, "cache_miss": 4, "called_for_link": 2,
         "local_storage_hit": 4, "direct_cache_miss": 5}
    )  # fmt: skip
    assert (stats.hits, stats.misses, stats.uncacheable) == (4, 4, 2)
    assert stats.hit_rate == 0.5
    assert stats.describe() == "ccache: 4/8 hits (50%), 2 not cacheable"


def test_sccache_diff_and_server_restart():
    def snap(h, m, nc):
        return {"stats": {"cache_hits": {"counts": {"C/C++": h, "CUDA": 1}}, "cache_misses": {"counts": {"CUDA": m}},
                          "requests_not_cacheable": nc, "requests_unsupported_compiler": 0}}  # fmt: skip

    s = ccache.parse_sccache_json(snap(2, 5, 1), snap(6, 6, 1))
    assert (s.hits, s.misses, s.uncacheable, s.exact) == (4, 1, 0, False)
    assert "includes concurrent builds" in s.describe()
    restarted = ccache.parse_sccache_json(snap(9, 9, 9), snap(1, 0, 0))
    assert (restarted.hits, restarted.misses) == (2, 0)


def test_no_compilations():
    assert ccache.parse_ccache_counters({}).describe() == "ccache: no compilations"
    assert ccache.parse_ccache_counters({}).hit_rate is None


def _ccache() -> str | None:
    local = Path(sys.executable).parent / "ccache"  # the venv's, even when the venv is not on PATH
    found = str(local) if local.exists() else shutil.which("ccache")
    return os.path.abspath(found) if found else None


@pytest.mark.skipif(not _ccache() or not shutil.which("c++"), reason="needs ccache and c++")
def test_probe_counts_only_this_builds_compiles_with_real_ccache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CCACHE_DIR", str(tmp_path / "cache"))
    exe = _ccache()
    probe = ccache.probe_for(exe, tmp_path / "probe")
    assert probe is not None and probe.kind == "ccache"
    (tmp_path / "probe").mkdir()

    def checkout(name: str) -> Path:
        src = tmp_path / name
        (src / "cmake-build-release").mkdir(parents=True)
        (src / "a.cpp").write_text('#include "a.h"\nint a() { return A; }\n')
        (src / "a.h").write_text("#define A 1\n")
        return src

    def compile_in(src: Path, *, base_dir: bool) -> None:
        env = {**os.environ, **probe.env()}
        if base_dir:
            env.update(ccache.launcher_env("ccache", src))
        # absolute paths, as CMake passes them
        argv = [exe, "c++", f"-I{src}", "-c", str(src / "a.cpp"), "-o", "a.o"]
        subprocess.run(argv, cwd=src / "cmake-build-release", env=env, check=True)

    probe.begin()
    compile_in(checkout("one"), base_dir=True)
    first = probe.end()
    assert (first.hits, first.misses) == (0, 1)

    # a compile outside the probe (another build sharing the cache) is not counted
    subprocess.run([exe, "c++", "-c", str(tmp_path / "one" / "a.cpp"), "-o", str(tmp_path / "other.o")], check=True)

    probe.begin()
    compile_in(checkout("two"), base_dir=True)  # same tree elsewhere: a hit because paths are relative
    compile_in(checkout("three"), base_dir=False)  # without the base dir its absolute paths differ: a miss
    second = probe.end()
    assert (second.hits, second.misses) == (1, 1)

    probe.begin()
    assert probe.end().lookups == 0  # nothing compiled


@pytest.mark.parametrize("kind, compiles, env, expected", [
    ("ccache", 1, {}, {"CCACHE_DEPEND": "true"}),
    ("ccache", 2, {}, {"CCACHE_DEPEND": "true"}),  # one TU per core
    ("ccache", 3, {}, {}),  # more than the cores: a flag or a shared header changed, keep the fallback
    ("ccache", 0, {}, {}),
    ("sccache", 1, {}, {}),
    (None, 1, {}, {}),
    ("ccache", 1, {"CCACHE_NODEPEND": "1"}, {}),  # the user's setting wins, either way
    ("ccache", 1, {"CCACHE_DEPEND": "1"}, {}),
])
def test_depend_mode_only_for_an_edit_with_ccache(kind, compiles, env, expected):
    assert ccache.depend_mode_env(kind, compiles, 2, env) == expected
