"""`import kernloop` notices a stale build: real builds of a copy of this checkout, real edits.

The copy is built by `python -m buildtools build` after the session's csrc build
(tests/conftest.py), so its TUs come from the compiler cache.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from _loop import ROOT, built_checkout

pytestmark = [pytest.mark.integration]

ACTIVATION = "csrc/cpu/activation.cpp"


@pytest.fixture(scope="module")
def checkout(kernloop_build, tmp_path_factory):
    if kernloop_build.build_dir is None:
        pytest.skip("KERNLOOP_TEST_INPLACE=1: no csrc build in this session to reuse")
    src, env, _ = built_checkout(tmp_path_factory.mktemp("guard"))
    return src, env


def _import(src: Path, env: dict[str, str], code: str = "import kernloop", **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "KERNLOOP_REBUILD_ON_IMPORT")}
    return subprocess.run([sys.executable, "-c", code], cwd=src, env={**env, **extra}, capture_output=True, text=True,
                          timeout=900)


def _edit(path: Path, marker: str) -> None:
    path.write_text(path.read_text() + f"\n// {marker}\n")


def test_a_fresh_build_imports_silently(checkout):
    src, env = checkout
    p = _import(src, env)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert (src / "kernloop" / ".build-stamp.json").is_file()


def test_an_edit_after_the_build_warns_once_with_the_command(checkout):
    src, env = checkout
    _edit(src / ACTIVATION, "edited after the build")
    p = _import(src, env, "import kernloop, importlib; importlib.reload(kernloop)")
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("kernloop:")]
    assert len(lines) == 1, p.stderr
    assert f"{ACTIVATION} changed after the build" in lines[0]
    assert "python -m buildtools build" in lines[0]
    doctor = subprocess.run([sys.executable, "-m", "buildtools", "doctor", "--source-dir", str(src)], cwd=ROOT,
                            env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert f"stale: {ACTIVATION} changed after the build" in doctor.stdout + doctor.stderr


def test_rebuild_on_import_builds_first_then_imports_silently(checkout):
    src, env = checkout
    _edit(src / ACTIVATION, "rebuilt on import")
    p = _import(src, env, KERNLOOP_REBUILD_ON_IMPORT="1")
    assert p.returncode == 0, p.stderr
    assert f"{ACTIVATION} changed after the build; rebuilding (python -m buildtools build)" in p.stderr
    assert "built: preset release" in p.stderr and ACTIVATION in p.stderr
    again = _import(src, env)
    assert again.returncode == 0 and again.stderr == "", again.stderr


def test_a_failed_rebuild_is_an_import_error_with_the_first_compiler_error(checkout):
    src, env = checkout
    path = src / ACTIVATION
    good = path.read_text()
    path.write_text(good + "\nint kernloop_broken() { return undefined_thing; }\n")
    try:
        p = _import(src, env, KERNLOOP_REBUILD_ON_IMPORT="1")
    finally:
        path.write_text(good)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: kernloop: rebuilding on import (KERNLOOP_REBUILD_ON_IMPORT=1) failed: build failed")
    assert "undefined_thing" in last and "activation.cpp" in last
