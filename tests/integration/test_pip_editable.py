"""`pip install --no-build-isolation -e .` through buildtools.backend, with real pip/cmake/ninja/ccache.

On the loop_project fixture (which uses the same backend) and on a copy of this checkout.
pip installs into a throw-away venv that sees this environment's packages through a .pth
file, so the shared venv is untouched.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _loop import (
    build,
    checkout_env,
    copy_checkout,
    copy_fixture,
    fx_value,
    have_build_tools,
    loop_env,
    one_kernel_tu,
    set_fx_value,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
]

SO = "_fx.abi3.so"


def make_overlay_venv(where: Path) -> Path:
    """A venv whose site-packages also sees this interpreter's (pip, scikit-build-core, torch)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next((where / "lib").glob("python3*/site-packages"))
    import sysconfig

    (site / "_kernloop_test_overlay.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where / "bin" / "python"


def pip(python: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def ccache_log_stats(env: dict[str, str]) -> dict[str, int]:
    import json

    out = subprocess.run(["ccache", "--print-log-stats", "--format", "json"], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def editable(tmp_path_factory):
    """Preset build first, then the pip editable build of the same tree."""
    tmp = tmp_path_factory.mktemp("pip")
    src = copy_fixture(tmp / "project", with_buildtools=True)
    env = loop_env(tmp / "ccache")
    rc, _, err = build(src, env)
    assert rc == 0, err
    python = make_overlay_venv(tmp / "venv")
    stats_log = tmp / "pip-ccache.log"
    p = pip(python, "--no-build-isolation", "-v", "-e", ".", cwd=src, env={**env, "CCACHE_STATSLOG": str(stats_log)})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return src, env, python, p.stdout + p.stderr, ccache_log_stats({**env, "CCACHE_STATSLOG": str(stats_log)})


def test_pip_build_uses_the_plan_and_its_own_build_dir(editable):
    src, env, python, output, _ = editable
    assert "kernloop: building in" in output and "cmake-build-pip" in output
    cache = (src / "cmake-build-pip" / "CMakeCache.txt").read_text()
    presets_cache = (src / "cmake-build-release" / "CMakeCache.txt").read_text()
    # the same planned values reached CMake through the backend as through the presets
    for var in ("TORCH_CUDA_ARCH_LIST", "NVCC_THREADS", "CMAKE_JOB_POOLS", "CMAKE_CXX_COMPILER_LAUNCHER",
                "CMAKE_CUDA_COMPILER_LAUNCHER", "CMAKE_CUDA_COMPILER", "KERNLOOP_PYTHON_EXECUTABLE"):  # fmt: skip
        line = next((l for l in presets_cache.splitlines() if l.startswith(f"{var}:")), None)
        if var == "KERNLOOP_PYTHON_EXECUTABLE":
            assert f"{var}:" in cache  # the pip build plans for the Python running pip
            continue
        assert line is not None and line.split("=", 1)[1] in cache, var


def test_pip_build_after_the_preset_build_is_all_cache_hits(editable):
    *_, stats = editable
    hits = stats["direct_cache_hit"] + stats["preprocessed_cache_hit"]
    assert (hits, stats["cache_miss"]) == (2, 0)


def test_editable_import_loads_the_module_the_preset_build_refreshes(editable, tmp_path):
    src, env, python, _, _ = editable
    where = subprocess.run(
        [str(python), "-c", "import looppkg, looppkg._fx as m; print(looppkg.__file__); print(m.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert where == [str(src / "looppkg" / "__init__.py"), str(src / "looppkg" / SO)]
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    assert not list(site.rglob("*.so")), "the editable wheel must not ship its own copy of the module"

    set_fx_value(src, 5)
    # the plain CMake command from the README, not our runner
    subprocess.run(["cmake", "--build", "--preset", "release", "--target", "install"], cwd=src, env=env,
                   check=True, capture_output=True)  # fmt: skip
    assert fx_value(src, str(python)) == 5
    set_fx_value(src, 1)
    rc, _, err = build(src, env)
    assert rc == 0, err
    assert fx_value(src, str(python)) == 1


def test_build_isolation_is_refused_with_the_fix(tmp_path):
    """Real pip, isolation on: torch is not in the isolated environment. The fixture's
    build requirements are emptied so pip needs no index to set the environment up."""
    src = copy_fixture(tmp_path / "project", with_buildtools=True)
    pyproject = src / "pyproject.toml"
    text = pyproject.read_text()
    start = text.index("requires = [")
    pyproject.write_text(text[:start] + "requires = []" + text[text.index("]", start) + 1 :])
    python = make_overlay_venv(tmp_path / "venv")
    p = pip(python, "--no-index", "-e", ".", cwd=src, env=loop_env(tmp_path / "ccache"))
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "pip's build isolation hides it" in out and "pip install --no-build-isolation -e ." in out
    assert "Traceback" not in out


def test_no_torch_at_all_names_what_to_install(tmp_path):
    src = copy_fixture(tmp_path / "project", with_buildtools=True)
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    p = subprocess.run(
        [str(bare / "bin" / "python"), "-c", "import buildtools.backend as b; b.get_requires_for_build_editable()"],
        cwd=src, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "torch is not installed" in lines[0]
    assert "requirements/torch-cuda.txt" in lines[0] and "--no-build-isolation" in lines[0]


# -- kernloop itself ----------------------------------------------------------------------------------

MARKER = """
// added by test_pip_editable: proves which build of the module is loaded
extern "C" __attribute__((visibility("default"))) int kernloop_edit_marker(void) { return 42; }
"""

PROBE = """
import ctypes, sys
import kernloop, kernloop._C as c, kernloop._moe_C as m
print(kernloop.__file__); print(c.__file__); print(m.__file__)
try:
    print(ctypes.CDLL(c.__file__).kernloop_edit_marker())
except AttributeError:
    print("no-marker")
"""


@pytest.fixture(scope="module")
def kernloop_editable(kernloop_build, tmp_path_factory):
    """A copy of this checkout: preset build (served from the session build's cache), then pip -e."""
    if kernloop_build.build_dir is None:
        pytest.skip("KERNLOOP_TEST_INPLACE=1: no csrc build in this session to reuse")
    tmp = tmp_path_factory.mktemp("kl-pip")
    src = copy_checkout(tmp / "kernloop")
    env = checkout_env()
    rc, _, err = build(src, env)
    assert rc == 0, err
    python = make_overlay_venv(tmp / "venv")
    stats_log = tmp / "pip-ccache.log"
    p = pip(python, "--no-build-isolation", "-e", ".", cwd=src, env={**env, "CCACHE_STATSLOG": str(stats_log)})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return src, env, python, ccache_log_stats({**env, "CCACHE_STATSLOG": str(stats_log)})


def test_kernloop_pip_build_after_the_preset_build_is_cache_hits(kernloop_editable):
    src, *_, stats = kernloop_editable
    tus = len(json.loads((src / "cmake-build-pip" / "compile_commands.json").read_text()))
    hits = stats["direct_cache_hit"] + stats["preprocessed_cache_hit"]
    assert (hits, stats["cache_miss"]) == (tus, 0)


def test_kernloop_editable_loads_what_the_preset_build_refreshes(kernloop_editable, tmp_path):
    src, env, python, _ = kernloop_editable

    def probe() -> list[str]:
        return subprocess.run([str(python), "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                              check=True, timeout=300).stdout.split()  # fmt: skip

    pkg = src / "kernloop"
    assert probe() == [str(pkg / "__init__.py"), str(pkg / "_C.abi3.so"), str(pkg / "_moe_C.abi3.so"), "no-marker"]
    tu = src / one_kernel_tu(src / "cmake-build-release")
    tu.write_text(tu.read_text() + MARKER)
    # the plain command from the README
    subprocess.run(["cmake", "--build", "--preset", "release", "--target", "install"], cwd=src, env=env,
                   check=True, capture_output=True, timeout=900)  # fmt: skip
    assert probe()[-1] == "42"  # the module import kernloop loads is the one just built
