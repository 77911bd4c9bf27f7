"""`python -m buildtools build` with real cmake, ninja, nvcc and ccache.

On the loop_project fixture (one copy per module, built in order): first build, no-op, touch
one .cu, edit one .cu, delete the build dir, a compile error, a changed arch list, a held lock.
On csrc/: a copy of this checkout, built after the session's csrc build (tests/conftest.py)
so its TUs come from the compiler cache: first build, no-op, touch one kernel.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _loop import (
    ROOT,
    build,
    built_checkout,
    built_fixture,
    fx_value,
    have_build_tools,
    one_kernel_tu,
    set_fx_value,
)
from buildtools.cmake import ninja

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
]

TUS = {"csrc/fx.cpp", "csrc/value.cu"}
SO = "_fx.abi3.so"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return built_fixture(tmp_path_factory.mktemp("loop"))


def test_first_build_writes_presets_configures_builds_installs(project):
    src, env, first = project
    assert first["steps"]["presets"].startswith("rewritten")
    assert first["steps"]["configure"].startswith("ran")
    assert set(first["rebuilt"]) == TUS
    assert first["installed"] == [{"path": str(src / "looppkg" / SO), "changed": True}]
    assert (src / "CMakeUserPresets.json").is_file()
    assert fx_value(src) == 1
    assert first["cache"]["tool"] == "ccache"
    assert first["cache"]["hits"] + first["cache"]["misses"] == len(TUS)


def test_noop_build_does_nothing(project):
    src, env, _ = project
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["steps"]["presets"] == "up to date"
    assert summary["steps"]["configure"] == "not needed"
    assert summary["rebuilt"] == [] and summary["linked"] == []
    assert summary["installed"] == [{"path": str(src / "looppkg" / SO), "changed": False}]


def test_touching_one_cu_rebuilds_that_tu_and_relinks_nothing_else(project):
    src, env, _ = project
    build_dir = src / "cmake-build-release"
    before = ninja.read_log(build_dir / ".ninja_log")
    os.utime(src / "csrc" / "value.cu")  # touch: newer mtime, same bytes
    rc, summary, err = build(src, env)
    assert rc == 0, err
    ran = ninja.ran_between(before, ninja.read_log(build_dir / ".ninja_log"))
    # ninja's own log says what ran: the touched TU and the link, nothing else
    assert sorted(e.output for e in ran) == sorted(["CMakeFiles/_fx.dir/csrc/value.cu.o", SO])
    assert summary["rebuilt"] == ["csrc/value.cu"] and summary["linked"] == [SO]
    assert summary["cache"]["hits"] == 1  # same bytes: served from the cache


def test_editing_a_kernel_refreshes_the_imported_module_atomically(project):
    src, env, _ = project
    so = src / "looppkg" / SO
    inode = so.stat().st_ino
    set_fx_value(src, 2)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["rebuilt"] == ["csrc/value.cu"]
    assert summary["installed"] == [{"path": str(so), "changed": True}]
    assert fx_value(src) == 2
    assert so.stat().st_ino != inode  # renamed into place, not overwritten under a loaded module
    assert not [p.name for p in so.parent.iterdir() if p.name.endswith(".tmp")]


def test_deleted_build_dir_rebuilds_from_the_cache(project):
    src, env, _ = project
    rc, _, err = build(src, env)  # make sure the cache has the current sources
    assert rc == 0, err
    import shutil

    shutil.rmtree(src / "cmake-build-release")
    rc, summary, err = build(src, env)
    assert rc == 0, err
    assert summary["steps"]["configure"].startswith("ran")
    assert set(summary["rebuilt"]) == TUS
    assert (summary["cache"]["hits"], summary["cache"]["misses"]) == (len(TUS), 0)


def test_clean_keeps_the_lock_and_rebuilds_from_the_cache(project):
    src, env, _ = project
    rc, summary, err = build(src, env, "--clean")
    assert rc == 0, err
    assert summary["steps"]["clean"] == "build dir emptied"
    assert summary["steps"]["presets"] == "up to date"  # a clean build is not a new machine
    assert set(summary["rebuilt"]) == TUS and summary["cache"]["misses"] == 0


def test_compile_error_exits_nonzero_with_the_first_error_only(project):
    src, env, _ = project
    value_cu = src / "csrc" / "value.cu"
    good = value_cu.read_text()
    value_cu.write_text(good.replace("out[i] = FX_VALUE;", "out[i] = FX_VALUE + undefined_x;"))
    try:
        rc, summary, err = build(src, env)
    finally:
        value_cu.write_text(good)
    assert rc == 1
    assert summary["ok"] is False
    assert 'error: identifier "undefined_x" is undefined' in err
    assert "-forward-unknown-to-host-compiler" not in err  # not the compiler's command line
    failure = summary["failure"].splitlines()
    assert len(failure) <= 10, summary["failure"]
    log = Path(summary["log"])
    assert "-forward-unknown-to-host-compiler" in log.read_text()  # the wall of text is in the log
    rc, summary, err = build(src, env)
    assert rc == 0, err


def test_changed_arch_list_regenerates_presets_and_reconfigures(project):
    src, env, _ = project
    presets = (src / "CMakeUserPresets.json").read_text()
    rc, summary, err = build(src, {**env, "TORCH_CUDA_ARCH_LIST": "8.0"})
    assert rc == 0, err
    assert summary["steps"]["presets"].startswith("rewritten (toolchain changed)")
    assert summary["steps"]["configure"] == "ran (the toolchain changed)"
    assert '"TORCH_CUDA_ARCH_LIST": "8.0"' in (src / "CMakeUserPresets.json").read_text()
    assert "csrc/value.cu" in summary["rebuilt"]
    rc, summary, err = build(src, env)  # and back
    assert rc == 0, err
    assert (src / "CMakeUserPresets.json").read_text() == presets


HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from buildtools.util.lock import BuildLock
    with BuildLock(Path(sys.argv[1]), command="holder --for-test"):
        print("HELD", flush=True)
        while not Path(sys.argv[2]).exists():
            time.sleep(0.02)
    """
)


def test_second_build_waits_for_the_lock_and_names_the_holder(project, tmp_path):
    src, env, _ = project
    flag = tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(src / "cmake-build-release"), str(flag)],
        env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "HELD"
        waiter = subprocess.Popen(
            [sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--no-progress"],
            cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        first = waiter.stderr.readline()
        assert f"locked by pid {holder.pid} (holder --for-test)" in first
        assert waiter.poll() is None
        flag.touch()
        rest = waiter.stderr.read()
        assert waiter.wait(timeout=300) == 0, rest
        assert "built: preset release" in rest
    finally:
        flag.touch()
        holder.wait(timeout=30)


# -- csrc/ ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkout(kernloop_build, tmp_path_factory):
    """A second copy of this checkout, built by `buildtools build` after the session's build."""
    if kernloop_build.build_dir is None:
        pytest.skip("KERNLOOP_TEST_INPLACE=1: no csrc build in this session to reuse")
    src, env, summary = built_checkout(tmp_path_factory.mktemp("checkout"))
    return src, env, summary


def test_csrc_build_in_a_new_tree_is_served_from_the_cache(checkout):
    src, env, first = checkout
    assert set(first["linked"]) == {"_C.abi3.so", "_moe_C.abi3.so"}
    assert {Path(f["path"]).name for f in first["installed"]} == {"_C.abi3.so", "_moe_C.abi3.so"}
    assert all(Path(f["path"]).parent == src / "kernloop" for f in first["installed"])
    cache = first["cache"]
    # same flags as the session build, paths relative to the source dir: every TU a hit
    assert cache["hits"] == len(first["rebuilt"]) and cache["misses"] == 0, cache


def test_csrc_noop_and_touch_one_kernel(checkout):
    src, env, _ = checkout
    build_dir = src / "cmake-build-release"
    rc, noop, err = build(src, env)
    assert rc == 0, err
    assert noop["ran"] == [] and noop["steps"]["configure"] == "not needed"

    tu = one_kernel_tu(build_dir)
    before = ninja.read_log(build_dir / ".ninja_log")
    os.utime(src / tu)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    ran = sorted(e.output for e in ninja.ran_between(before, ninja.read_log(build_dir / ".ninja_log")))
    # that TU and the link of the module it belongs to; _moe_C and every other TU untouched
    assert ran == sorted([f"CMakeFiles/_C.dir/{tu}.o", "_C.abi3.so"])
    assert [f["changed"] for f in summary["installed"] if f["path"].endswith("_moe_C.abi3.so")] == [False]
