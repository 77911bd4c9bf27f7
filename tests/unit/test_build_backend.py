"""The PEP 517 backend's settings: the planner's numbers, as scikit-build-core config settings."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from buildtools import backend
from buildtools.session import PlanOptions, plan_for

from buildtools.cmake.presets import expand_env_macros

ROOT = Path(__file__).resolve().parents[2]


def test_settings_carry_the_same_plan_as_the_presets(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setenv("MAX_JOBS", "1")
    settings, env, plan = backend.planned_settings(None, editable=True, source_dir=ROOT)
    _, again = plan_for(PlanOptions(source_dir=ROOT, interactive=False))
    assert plan.cache_variables == again.cache_variables  # one planner, same answer
    for name, value in plan.cache_variables.items():
        assert settings[f"cmake.define.{name}"] == value
    assert "cmake.define.CMAKE_INSTALL_PREFIX" not in settings  # the wheel's prefix is scikit-build-core's
    assert settings["cmake.build-type"] == plan.build_type.value == "Release"
    assert settings["build-dir"] == backend.PIP_BUILD_DIR
    assert settings["install.components"] == backend.NO_WHEEL_COMPONENT
    assert env["CMAKE_BUILD_PARALLEL_LEVEL"] == "1"
    for name, value in expand_env_macros(plan.environment, os.environ).items():  # launcher settings (CCACHE_BASEDIR...)
        assert env[name] == value
    if plan.cuda:
        assert settings["cmake.define.TORCH_CUDA_ARCH_LIST"] == "9.0"
        assert "cmake.define.NVCC_THREADS" in settings and "cmake.define.CMAKE_CUDA_COMPILER" in settings
    assert settings["cmake.define.CMAKE_JOB_POOL_COMPILE"] == "compile"


def test_user_config_settings_win_and_wheels_ship_the_modules(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    user = {"cmake.define.NVCC_THREADS": "7", "build-dir": "elsewhere", "cmake.build-type": "Debug"}
    settings, env, _ = backend.planned_settings(user, editable=False, source_dir=ROOT)
    assert settings["cmake.define.NVCC_THREADS"] == "7"
    assert settings["build-dir"] == "elsewhere" and settings["cmake.build-type"] == "Debug"
    assert "install.components" not in settings  # a real wheel contains _C/_moe_C
    import shutil

    if shutil.which("c++"):
        assert env["CXX"] == "c++"  # CMake's default name, as in the preset build
    monkeypatch.setenv("CXX", "/opt/my/g++")
    _, env, _ = backend.planned_settings(None, editable=False, source_dir=ROOT)
    assert "CXX" not in env  # the user's compiler choice stays


def test_backend_imports_without_scikit_build_core_and_names_the_fix(tmp_path):
    """Only the hooks need scikit-build-core; a missing one is one line naming the package."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    code = "import buildtools.backend as b; b.build_sdist('.')"
    p = subprocess.run([str(bare / "bin" / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert "scikit-build-core is not installed" in line and "requirements/build.txt" in line
