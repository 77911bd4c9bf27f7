"""The no-op fast path (buildtools.run.noop): answered without planning, and never when anything
it recorded changed. Real cmake, ninja and ccache on a copy of the loop fixture."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _loop import ROOT, copy_fixture, have_build_tools, loop_env, set_fx_value
from buildtools.run import noop

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache")]

FAST = "nothing changed since the last build, ninja -n has no work (fast path)"


def _build(src: Path, env: dict[str, str], *extra: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--json",
                        "--no-progress", *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert "\nbuilt: preset release in " in "\n" + p.stderr, p.stderr  # the text summary, either path
    return summary


def _fast(summary: dict) -> bool:
    return summary["steps"].get("check") == FAST


def _settle() -> None:
    time.sleep(1.1)  # past the racy second: a file written in it is not trusted


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    src = copy_fixture(tmp_path / "project")
    env = {**loop_env(tmp_path / "ccache"), "PYTHONPATH": str(ROOT)}
    _build(src, env)
    _settle()
    _build(src, env)  # the facts are recorded now, and the record for the fast path
    return src, env


def test_a_noop_is_answered_without_planning_and_says_what_the_full_path_says(tree):
    src, env = tree
    summary = _build(src, env)
    assert _fast(summary)
    assert summary["steps"]["detect"] == "cached" and summary["steps"]["presets"] == "up to date"
    assert summary["steps"]["install"] == f"up to date ({src})" and summary["ran"] == []
    assert summary["installed"] == [{"path": str(src / "looppkg" / "_fx.abi3.so"), "changed": False}]
    # No module of the planner or the runner was imported to answer it.
    probe = ("import sys, runpy; sys.argv = ['buildtools', 'build', '--source-dir', sys.argv[1]]\n"
             "try:\n    runpy.run_module('buildtools', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('buildtools')), file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", probe, str(src)], cwd=ROOT, env=env, capture_output=True, text=True)
    loaded = p.stderr.strip().splitlines()[-1]
    assert "buildtools.run.noop" in loaded and "buildtools.run.build" not in loaded and "buildtools.plan" not in loaded


def test_an_edit_goes_the_full_way_and_the_next_noop_is_fast_again(tree):
    src, env = tree
    set_fx_value(src, 7)
    summary = _build(src, env)
    assert not _fast(summary) and summary["rebuilt"] == ["csrc/value.cu"], summary
    assert summary["steps"]["install"] == f"into {src}"
    _settle()
    _build(src, env)
    assert _fast(_build(src, env))


def test_an_edits_dry_run_is_kept_for_the_full_path_while_the_graph_holds(tree, monkeypatch):
    from buildtools.cache.nvcc_threads import pending_compiles

    src, env = tree
    build_dir = src / "cmake-build-release"
    monkeypatch.setattr(noop, "_last_dry_run", None)
    set_fx_value(src, 9)
    assert noop.fast_build(["build", "--source-dir", str(src)], env) is None  # work to do
    text = noop.dry_run_output(build_dir)
    assert text is not None and pending_compiles(text.splitlines())[1] == 1
    assert noop.dry_run_output(src / "elsewhere") is None
    os.utime(build_dir / "build.ninja")  # the graph was regenerated: ask ninja again
    assert noop.dry_run_output(build_dir) is None


@pytest.mark.parametrize("change", ["pyproject", "override", "flag", "deleted module", "peaks log", "presets",
                                    "plain cmake build", "stamp"])
def test_what_a_noop_checks_takes_the_full_path(tree, change):
    src, env = tree
    run_env, extra = env, ()
    if change == "pyproject":
        with (src / "pyproject.toml").open("a") as fh:
            fh.write("\n# an edit\n")
    elif change == "override":
        run_env = {**env, "KERNLOOP_RAM_BUDGET": "3G"}
    elif change == "flag":
        extra = ("--remote-cache", "off")
    elif change == "deleted module":
        (src / "looppkg" / "_fx.abi3.so").unlink()
    elif change == "peaks log":  # a plain cmake --build measured a compile
        (src / "cmake-build-release" / ".kernloop-tu-peaks.log").write_text("1\tCXX\t1000\t1\t/x.cpp\n")
    elif change == "presets":
        os.utime(src / "CMakeUserPresets.json")
    elif change == "plain cmake build":  # it builds, does not install: the next build must install
        set_fx_value(src, 9)
        subprocess.run(["cmake", "--build", "--preset", "release"], cwd=src, env=env, check=True, capture_output=True)
    elif change == "stamp":
        (src / "looppkg" / ".build-stamp.json").unlink()
    summary = _build(src, run_env, *extra)
    assert not _fast(summary), change
    if change in ("deleted module", "plain cmake build"):
        assert summary["steps"]["install"] == f"into {src}"
    if change == "stamp":
        assert (src / "looppkg" / ".build-stamp.json").is_file()


def test_a_plain_cmake_install_with_nothing_to_build_keeps_the_fast_path(tree):
    src, env = tree
    log = src / "cmake-build-release" / ".ninja_log"
    size = log.stat().st_size
    subprocess.run(["cmake", "--build", "--preset", "release", "--target", "install"], cwd=src, env=env, check=True,
                   capture_output=True)
    assert log.stat().st_size > size  # ninja logged the install's run
    assert _fast(_build(src, env))


def test_a_failed_build_leaves_no_record(tree):
    src, env = tree
    value = src / "csrc" / "value.cu"
    good = value.read_text()
    value.write_text(good + "\nthis is not C++;\n")
    p = subprocess.run([sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--no-progress"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode != 0
    assert not (src / "cmake-build-release" / noop.RECORD_NAME).exists()
    value.write_text(good)
    assert not _fast(_build(src, env))


def test_only_a_plain_build_command_line_is_answered():
    assert noop._source_dir(["build"]) == noop._PROJECT_ROOT
    assert noop._source_dir(["build", "--json", "--source-dir", "/x"]) == Path("/x")
    assert noop._source_dir(["build", "--source-dir=/y", "--no-progress"]) == Path("/y")
    for argv in (["build", "--preset", "debug"], ["build", "--explain"], ["build", "--remote-cache", "off"], ["doctor"], [],
                 ["build", "--source-dir"]):
        assert noop._source_dir(argv) is None, argv
