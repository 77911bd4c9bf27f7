"""Shared by the kernel and build tests: one real build of csrc/ per test session, and the gpu skip.

The build runs the developer's loop on a copy of the tracked tree in a temporary directory, so the
checkout's own CMakeUserPresets.json, build directories and kernloop/*.so stay untouched:
``python tools/generate_presets.py --force-overwrite --arch 9.0`` (one arch keeps it short), then
``cmake --workflow --preset release``. The presets put ccache in front of the compilers with
CCACHE_BASEDIR at the copy, so a rerun in a new temporary directory is mostly cache hits.

``KERNLOOP_TEST_INPLACE=1`` skips that build and tests the checkout's own (already built) kernloop/,
for the edit -> build -> test loop.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_ARCH = "9.0"
EXTENSIONS = ("_C", "_moe_C")


@functools.lru_cache(maxsize=None)
def cuda_device_available() -> bool:
    """A usable CUDA device (imports torch only when a gpu test asks)."""
    import torch

    return bool(torch.cuda.is_available())


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None and not cuda_device_available():
        pytest.skip("needs a CUDA device")


@dataclass(frozen=True)
class KernloopBuild:
    root: Path  # source tree whose kernloop/ holds the built modules
    build_dir: Path | None  # None for KERNLOOP_TEST_INPLACE
    log: str  # output of the presets generator and the workflow
    cmake: str  # the cmake that built it
    arch: str = TEST_ARCH  # TORCH_CUDA_ARCH_LIST of the build
    extensions: tuple[str, ...] = EXTENSIONS

    def module_path(self, name: str) -> Path:
        return self.root / "kernloop" / f"{name}.abi3.so"


def tool(name: str) -> str:
    """A tool from this interpreter's environment first (the venv need not be on PATH)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH -- run tools/setup.sh")
    return found


def tracked_files(repo: Path) -> list[Path]:
    """Tracked plus new, not ignored files (what a commit of the work tree would hold)."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return [Path(p) for p in sorted(set(out.split("\0"))) if p and (repo / p).is_file()]


def copy_tree(repo: Path, dest: Path) -> None:
    for rel in tracked_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)


def run_logged(argv: list[str], cwd: Path, env: dict[str, str], log: list[str], timeout: float) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    log.append(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed (exit {result.returncode}):\n"
                    f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}", pytrace=False)


def build_env() -> dict[str, str]:
    env = dict(os.environ)
    # The test decides the arch and the build; leftovers from the caller's shell must not.
    for var in ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "NVCC_THREADS", "CMAKE_BUILD_TYPE", "CMAKE_ARGS"):
        env.pop(var, None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.fixture(scope="session")
def kernloop_build(tmp_path_factory: pytest.TempPathFactory) -> KernloopBuild:
    if os.environ.get("KERNLOOP_TEST_INPLACE") == "1":
        return KernloopBuild(root=REPO, build_dir=None, log="", cmake=tool("cmake"))
    root = tmp_path_factory.mktemp("kernloop-src")
    try:
        copy_tree(REPO, root)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"cannot copy the tracked tree of {REPO} (needs git): {exc}", pytrace=False)
    env = build_env()
    log: list[str] = []
    run_logged([sys.executable, "tools/generate_presets.py", "--force-overwrite", "--arch", TEST_ARCH,
                "--source-dir", str(root)], root, env, log, timeout=300)
    cmake = tool("cmake")
    run_logged([cmake, "--workflow", "--preset", "release"], root, env, log, timeout=3000)
    return KernloopBuild(root=root, build_dir=root / "cmake-build-release", log="\n".join(log), cmake=cmake)


@pytest.fixture(scope="session")
def kernloop_module(kernloop_build: KernloopBuild) -> ModuleType:
    """``import kernloop`` from the built tree. The ops register torch namespaces, which can
    happen once per process, so a kernloop imported from anywhere else first is an error."""
    want = kernloop_build.root / "kernloop"
    loaded = sys.modules.get("kernloop")
    if loaded is not None:
        if Path(loaded.__file__).resolve().parent != want.resolve():
            pytest.fail(f"kernloop was already imported from {loaded.__file__}; the tests need {want}",
                        pytrace=False)
        return loaded
    # Loaded by location, not by putting the copy on sys.path: other tests' imports (buildtools)
    # must keep resolving to the checkout.
    spec = importlib.util.spec_from_file_location("kernloop", want / "__init__.py",
                                                  submodule_search_locations=[str(want)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kernloop"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["kernloop"]
        raise
    return module
