"""A lone dirty .cu gets the machine: nvcc --threads raised for that build only, and ccache's
depend mode (no preprocessor pass on the miss), with real cmake, ninja, nvcc and ccache on the
loop_project fixture built for two archs (two gencodes).

ccache's debug log (CCACHE_DEBUG) shows the command nvcc really ran and how ccache keyed it;
ninja's log shows the command hash never changed, and a TU compiled at --threads=1 in the
preprocessor mode is a cache hit at --threads=2 in the depend mode.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest

from _loop import build as _build
from _loop import built_fixture, have_build_tools, set_fx_value
from buildtools.cmake import ninja

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
]

CU_O = "CMakeFiles/_fx.dir/csrc/value.cu.o"


def _ccache_logs(build_dir: Path) -> list[str]:
    """ccache's debug logs of value.cu since the last call, oldest first (each is read once)."""
    logs = sorted((build_dir / "CMakeFiles" / "_fx.dir" / "csrc").glob("value.cu.o.*ccache-log"),
                  key=lambda p: p.stat().st_mtime_ns)
    out = []
    for log in logs:
        out.append(log.read_text(errors="replace"))
        log.unlink()
    return out


def _threads_seen(build_dir: Path) -> list[str]:
    """The --threads of every nvcc command ccache saw (its debug logs), newest last."""
    return [m.group(1) for text in _ccache_logs(build_dir)
            if (m := re.search(r"Command line: .*?--threads=(\d+)", text))]


@contextlib.contextmanager
def _two_cores():
    """The build sees two cores (it inherits this process's CPU affinity), as the expectations do."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[:2])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def build(src: Path, env: dict[str, str]):
    with _two_cores():
        return _build(src, env)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 cores")
    src, env, summary = built_fixture(tmp_path_factory.mktemp("lone"), TORCH_CUDA_ARCH_LIST="8.0;9.0",
                                      CCACHE_DEBUG="1", MAX_JOBS="2")
    if "CUDA" not in (src / "cmake-build-release" / "build.ninja").read_text():
        pytest.skip("no CUDA build here")
    return src, env, summary


def test_a_cold_build_keeps_the_plans_threads_and_the_preprocessor_mode(project):
    src, _, first = project
    assert "nvcc-threads" not in first["steps"]  # two TUs to compile on two cores
    assert "ccache" not in first["steps"]  # a first build: its hits may come from another build dir
    (log,) = _ccache_logs(src / "cmake-build-release")
    assert "--threads=1" in log and "Running preprocessor" in log


def test_one_dirty_cu_gets_every_core_without_a_new_command_or_a_cache_miss(project):
    src, env, _ = project
    build_dir = src / "cmake-build-release"
    cmdhash = ninja.read_log(build_dir / ".ninja_log")[CU_O].cmdhash
    set_fx_value(src, 5)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["rebuilt"] == ["csrc/value.cu"]
    assert summary["steps"]["nvcc-threads"].startswith("up to 2 for this build (1 CUDA of 1 TUs")
    assert _threads_seen(build_dir) == ["2"]
    assert ninja.read_log(build_dir / ".ninja_log")[CU_O].cmdhash == cmdhash  # the same command line for ninja
    set_fx_value(src, 1)  # back to the bytes the cold build compiled at --threads=1
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert _threads_seen(build_dir) == ["2"]
    assert (summary["cache"]["hits"], summary["cache"]["misses"]) == (1, 0)  # --threads is not in the key


def test_an_edit_misses_without_a_preprocessor_pass_and_its_undo_hits(project):
    src, env, _ = project
    build_dir = src / "cmake-build-release"
    _ccache_logs(build_dir)
    set_fx_value(src, 7)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["steps"]["ccache"].startswith("depend mode for this build (1 TU to compile on 2 cores)")
    (log,) = _ccache_logs(build_dir)
    assert "Got result key from dependency file" in log and "Running preprocessor" not in log
    assert (summary["cache"]["hits"], summary["cache"]["misses"]) == (0, 1)
    set_fx_value(src, 1)  # undone: the direct-mode key of the first build still holds
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert (summary["cache"]["hits"], summary["cache"]["misses"]) == (1, 0)
    _ccache_logs(build_dir)


def test_the_users_ccache_nodepend_wins(project):
    src, env, _ = project
    build_dir = src / "cmake-build-release"
    _ccache_logs(build_dir)
    set_fx_value(src, 8)
    rc, summary, err = build(src, {**env, "CCACHE_NODEPEND": "1"})
    assert rc == 0, err
    assert "ccache" not in summary["steps"]
    (log,) = _ccache_logs(build_dir)
    assert "Running preprocessor" in log


def test_a_plain_cmake_build_runs_the_command_unchanged(project):
    src, env, _ = project
    build_dir = src / "cmake-build-release"
    set_fx_value(src, 6)
    import subprocess
    import sys

    cmake = str(Path(sys.executable).parent / "cmake")
    with _two_cores():
        p = subprocess.run([cmake, "--build", "--preset", "release"], cwd=src, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert _threads_seen(build_dir) == ["1"]
    rc, summary, err = build(src, env)  # and buildtools' next build has nothing to redo
    assert rc == 0 and summary["rebuilt"] == [], err
