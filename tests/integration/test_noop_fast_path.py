"""The no-op build skips detection and install, yet notices what changed: real cmake, ninja, nvcc.

On a copy of the loop_project fixture, with a directory of its own at the front of PATH and one
on PYTHONPATH (both empty at first, so the first build's facts are the machine's): a no-op
detects nothing and installs nothing; a new nvcc on PATH, a new torch on sys.path, an override
and a ``[tool.buildtools]`` edit each rewrite the presets; taking them away again does too.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _loop import ROOT, copy_fixture, have_build_tools, loop_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
]

FAKE_NVCC = """#!/bin/sh
# a second CUDA install: its own bin/ (answers detection's -dryrun), the real compiler behind it
here="$(dirname "$(readlink -f "$0")")"
if [ "$1" = "-dryrun" ]; then
  echo "#\\$ _HERE_=$here" >&2
  echo "#\\$ TOP=$here/.." >&2
  exit 0
fi
exec {real} "$@"
"""


def _build(src: Path, env: dict[str, str]) -> dict:
    p = subprocess.run([sys.executable, "-m", "buildtools", "build", "--source-dir", str(src), "--json",
                        "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _settle() -> None:
    time.sleep(1.1)  # past the racy window: a file written this second is not trusted by the cache


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("noop")
    src = copy_fixture(tmp / "project")
    bin_dir, site = tmp / "bin", tmp / "site"
    bin_dir.mkdir()
    site.mkdir()
    env = loop_env(tmp / "ccache")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{site}"
    first = _build(src, env)
    assert first["steps"]["detect"].startswith("ran")
    _settle()
    return src, env, bin_dir, site


def test_noop_runs_no_detection_and_no_install(tree):
    src, env, _, _ = tree
    _build(src, env)  # records the facts (the first build's were taken while the presets were new)
    summary = _build(src, env)
    assert summary["steps"]["detect"] == "cached"
    assert summary["steps"]["presets"] == "up to date"
    assert summary["steps"]["configure"] == "not needed"
    assert summary["steps"]["install"] == f"up to date ({src})"
    assert summary["ran"] == []
    assert summary["installed"] == [{"path": str(src / "looppkg" / "_fx.abi3.so"), "changed": False}]


def test_a_deleted_installed_module_is_installed_again(tree):
    src, env, _, _ = tree
    so = src / "looppkg" / "_fx.abi3.so"
    so.unlink()
    summary = _build(src, env)
    assert summary["steps"]["install"] == f"into {src}"
    assert summary["installed"] == [{"path": str(so), "changed": True}] and so.is_file()


def test_a_new_nvcc_on_path_is_noticed(tree):
    src, env, bin_dir, _ = tree
    real = shutil.which("nvcc", path=env["PATH"])
    if real is None:
        pytest.skip("needs nvcc")
    toolkit = bin_dir.parent / "cuda-second" / "bin"
    toolkit.mkdir(parents=True)
    (toolkit / "nvcc").write_text(FAKE_NVCC.format(real=real))
    (toolkit / "nvcc").chmod(0o755)
    (bin_dir / "nvcc").symlink_to(toolkit / "nvcc")
    try:
        summary = _build(src, env)
        assert summary["steps"]["detect"] == f"ran ({bin_dir} changed)"
        assert summary["steps"]["presets"].startswith("rewritten (toolchain changed); what changed: nvcc")
        assert str(toolkit / "nvcc") in (src / "CMakeUserPresets.json").read_text()
    finally:
        (bin_dir / "nvcc").unlink()
    _settle()
    summary = _build(src, env)
    assert summary["steps"]["presets"].startswith("rewritten (toolchain changed); what changed: nvcc")
    assert str(toolkit / "nvcc") not in (src / "CMakeUserPresets.json").read_text()


def test_a_new_torch_on_sys_path_is_noticed(tree):
    src, env, _, site = tree
    torch_dir = site / "torch"
    torch_dir.mkdir()
    (torch_dir / "__init__.py").write_text("")
    (torch_dir / "version.py").write_text("__version__ = '2.99.0+cu130'\ncuda = '13.0'\nhip = None\n")
    try:
        summary = _build(src, env)
        assert summary["steps"]["detect"] == f"ran ({site} changed)"
        assert "(toolchain changed); what changed: torch" in summary["steps"]["presets"]
        _settle()
        assert _build(src, env)["steps"]["detect"] == "ran (no facts recorded yet)"  # they were new: not kept
        assert _build(src, env)["steps"]["detect"] == "cached"
        (torch_dir / "version.py").write_text("__version__ = '2.99.1+cu130'\ncuda = '13.0'\nhip = None\n")
        summary = _build(src, env)  # an upgrade in place: the same dir, a new version.py
        assert summary["steps"]["detect"] == f"ran ({torch_dir / 'version.py'} changed)"
        assert "(toolchain changed); what changed: torch" in summary["steps"]["presets"]
    finally:
        shutil.rmtree(torch_dir)
    summary = _build(src, env)
    assert "(toolchain changed); what changed: torch" in summary["steps"]["presets"]


def test_an_override_and_a_pyproject_setting_are_noticed(tree):
    src, env, _, _ = tree
    _settle()
    assert _build(src, env)["steps"]["detect"].startswith("ran")  # the torch of the test before was new
    assert _build(src, env)["steps"]["detect"] == "cached"
    summary = _build(src, {**env, "KERNLOOP_RAM_BUDGET": "3G"})
    assert summary["steps"]["detect"] == "ran (the environment changed)"
    assert summary["steps"]["presets"].endswith("(toolchain changed); what changed: overrides")
    _settle()
    _build(src, env)
    _settle()
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[tool.buildtools]\nmax-nvcc-threads = 1\n")
    summary = _build(src, env)
    assert summary["steps"]["detect"] == "cached"  # the settings are read afresh every build
    assert summary["steps"]["presets"].endswith("(toolchain changed); what changed: settings")
