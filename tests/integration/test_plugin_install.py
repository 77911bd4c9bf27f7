"""The example ROCm plugin (tests/fixtures/rocm_plugin), built and pip-installed into a throw-away
venv, then used the way a user would: ``python tools/generate_presets.py`` and
``python -m buildtools patches list|check`` run with that venv's Python.

This machine has no ROCm, so the test gives the venv what ROCm detection reads:
- a ROCm build of torch: ``torch/version.py`` with ``hip`` set, as the real wheel ships it (the
  generator reads that file and never imports torch), plus an empty ``TorchConfig.cmake``;
- a ROCm tree on PATH: ``bin/hipcc`` printing a HIP version, ``bin/rocm_agent_enumerator`` listing
  one GPU (gfx942), ``lib/llvm/bin/clang++`` and ``.info/version``.

The venv is made with ``--without-pip`` plus a ``.pth`` line naming the test environment's
site-packages: pip, setuptools (the plugin's build backend, used with --no-build-isolation) and
buildtools' dependencies come from there. (``--system-site-packages`` would not do: a venv made
by a venv's Python sees the base interpreter's packages, not the venv's.) The venv's own
site-packages comes first on sys.path, so its torch stand-in hides the real torch. pip runs with
``--no-index`` and no pip config: nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "rocm_plugin"
GENERATOR = REPO / "tools" / "generate_presets.py"
HIP_VERSION = "6.2.41133-dd7f95766"


@dataclass(frozen=True)
class Machine:
    root: Path
    python: Path  # the venv's
    site: Path  # the venv's site-packages
    rocm: Path
    src: Path  # the project the presets are written for
    env: dict[str, str]

    def run(self, *argv: str | Path, env: dict[str, str] | None = None, cwd: Path = REPO,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or self.env, capture_output=True,
                                text=True, timeout=300, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
        return result

    def generate(self, env: dict[str, str] | None = None) -> tuple[dict, str]:
        """Run the generator; (the written base preset, stderr)."""
        result = self.run(self.python, GENERATOR, "--force-overwrite", "--source-dir", self.src, env=env,
                          cwd=self.src)
        doc = json.loads((self.src / "CMakeUserPresets.json").read_text())
        base = next(p for p in doc["configurePresets"] if p["name"] == "kernloop-base")
        return base, result.stderr

    def buildtools(self, *args: str, env: dict[str, str] | None = None,
                   check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.python, "-m", "buildtools", *args, env=env, check=check)


def write_executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def make_machine(root: Path) -> Machine:
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                   timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "kernloop-test-base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    torch = site / "torch"
    (torch / "share" / "cmake" / "Torch").mkdir(parents=True)
    (torch / "share" / "cmake" / "Torch" / "TorchConfig.cmake").write_text("")
    (torch / "__init__.py").write_text("raise ImportError('test stand-in for torch: only version.py is read')\n")
    (torch / "version.py").write_text(
        "from typing import Optional\n\n__version__ = '2.5.1+rocm6.2'\ndebug = False\n"
        f"cuda: Optional[str] = None\nhip: Optional[str] = {HIP_VERSION!r}\n")

    rocm = root / "rocm-6.2.0"
    write_executable(rocm / "bin" / "hipcc",
                     f"#!/bin/sh\necho 'HIP version: {HIP_VERSION}'\necho 'AMD clang version 18.0.0git'\n")
    write_executable(rocm / "bin" / "rocm_agent_enumerator", "#!/bin/sh\necho gfx000\necho gfx942\n")
    write_executable(rocm / "lib" / "llvm" / "bin" / "clang++", "#!/bin/sh\nexit 1\n")
    (rocm / ".info").mkdir()
    (rocm / ".info" / "version").write_text("6.2.0-66\n")

    src = root / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src / "pyproject.toml")

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "KERNLOOP_", "ROCM_", "PYTORCH_"))
           and k not in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "NVCC_THREADS", "CMAKE_BUILD_TYPE", "CMAKE_ARGS",
                         "PYTHONPATH", "VIRTUAL_ENV")}
    # The test environment's bin (cmake, ninja, ccache) after the fake ROCm; no CUDA toolkit is needed.
    env["PATH"] = os.pathsep.join([str(rocm / "bin"), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return Machine(root, python, site, rocm, src, env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Machine:
    """A machine with the plugin pip-installed (built from a copy, so the checkout stays clean)."""
    machine = make_machine(tmp_path_factory.mktemp("rocm-installed"))
    source = machine.root / "kernloop-rocm"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    machine.run(machine.python, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
                source, cwd=machine.root)
    assert (machine.site / "kernloop_rocm" / "patch" / "ccache_extrafiles.py").is_file()
    return machine


def test_without_the_plugin_a_rocm_machine_gets_a_cpu_only_plan(tmp_path):
    machine = make_machine(tmp_path)
    base, stderr = machine.generate()
    assert base["displayName"] == "kernloop base (CPU; generated, do not edit)"
    assert base["cacheVariables"]["KERNLOOP_ENABLE_CUDA"] == "OFF"
    assert not any("HIP" in name for name in base["cacheVariables"])
    assert "note: CPU-only plan: " in stderr and "torch 2.5.1+rocm6.2 is a ROCm build" in stderr
    assert "patches: none" in machine.buildtools("patches", "list", "--source-dir", str(machine.src)).stdout


def test_pip_installed_plugin_changes_the_presets_the_generator_writes(installed):
    base, stderr = installed.generate()
    clang = installed.rocm / "lib" / "llvm" / "bin" / "clang++"
    assert base["displayName"] == "kernloop base (ROCM; generated, do not edit)"
    cache = base["cacheVariables"]
    assert cache["KERNLOOP_ENABLE_HIP"] == "ON" and cache["KERNLOOP_ENABLE_CUDA"] == "OFF"
    assert cache["CMAKE_HIP_COMPILER"] == str(clang)
    assert cache["CMAKE_HIP_ARCHITECTURES"] == cache["PYTORCH_ROCM_ARCH"] == "gfx942"  # the local GPU
    assert cache["ROCM_PATH"] == str(installed.rocm)
    launcher = cache["CMAKE_CXX_COMPILER_LAUNCHER"]
    assert Path(launcher).name == "ccache" and cache["CMAKE_HIP_COMPILER_LAUNCHER"] == launcher
    # The plugin's patch, applied while the plan was made:
    assert base["environment"]["CCACHE_EXTRAFILES"] == str(installed.rocm / ".info" / "version")
    assert "warning:" not in stderr and "note:" not in stderr  # a ROCm plan on a ROCm machine is no fallback

    plan = installed.run(installed.python, GENERATOR, "--dry-run", "--print-plan", "--source-dir", installed.src,
                         cwd=installed.src).stdout
    assert "archs=gfx942: local GPUs (rocm_agent_enumerator)" in plan
    assert f"note: rocm: hipcc {installed.rocm / 'bin' / 'hipcc'} (HIP 6.2.41133, from PATH)" in plan
    assert "note: patch rocm:ccache_extrafiles applied: buildtools.plan.planner.choose_launcher (before-planning)" in plan


def test_its_patch_is_listed_as_applied_and_its_registry_checks(installed):
    out = installed.buildtools("patches", "list", "--source-dir", str(installed.src)).stdout
    assert "platforms: cuda (built-in), rocm (kernloop-rocm 0.1.0) [selected], cpu (built-in)" in out
    assert "rocm:ccache_extrafiles: applied -- buildtools 0.1.0 in >=0.1,<0.2\n" in out
    assert "    target buildtools.plan.planner.choose_launcher (before-planning)\n" in out
    checked = installed.buildtools("patches", "check")
    assert "ok: kernloop_rocm.patch" in checked.stdout
    assert "1 patch(es) in 1 package(s), all documented" in checked.stdout


def test_version_override_skips_the_patch_but_keeps_the_platform(installed):
    env = dict(installed.env, KERNLOOP_BUILDTOOLS_VERSION="0.2.0")
    base, _ = installed.generate(env)
    assert base["cacheVariables"]["KERNLOOP_ENABLE_HIP"] == "ON"
    assert "CCACHE_EXTRAFILES" not in base["environment"]
    out = installed.buildtools("patches", "list", "--source-dir", str(installed.src), env=env).stdout
    assert "buildtools 0.2.0 (from KERNLOOP_BUILDTOOLS_VERSION)" in out
    assert ("rocm:ccache_extrafiles: skipped -- buildtools 0.2.0 (from KERNLOOP_BUILDTOOLS_VERSION) "
            "is outside >=0.1,<0.2\n") in out


def test_drift_in_the_installed_plugin_fails_the_check_and_the_patch_is_not_applied(installed):
    module = installed.site / "kernloop_rocm" / "patch" / "ccache_extrafiles.py"
    saved = module.read_bytes()
    module.unlink()
    try:
        checked = installed.buildtools("patches", "check", check=False)
        assert checked.returncode == 1
        assert ("problem: kernloop_rocm.patch: REGISTRY entry 'ccache_extrafiles' has no module "
                "(ccache_extrafiles.py)") in checked.stdout
        base, stderr = installed.generate()
        assert base["cacheVariables"]["KERNLOOP_ENABLE_HIP"] == "ON"
        assert "CCACHE_EXTRAFILES" not in base["environment"]
        assert "warning: platform plugin 'rocm' (kernloop-rocm 0.1.0): the patch registry of kernloop_rocm.patch " \
               "does not match its modules" in stderr
    finally:
        module.write_bytes(saved)
