"""Shared helpers for the build-loop integration tests: a temp copy of the loop_project
fixture, an environment with a private compiler cache, and the CLI as a subprocess."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "loop_project"
ARCH = "9.0"  # one arch keeps nvcc quick


def have_build_tools() -> bool:
    bindir = Path(sys.executable).parent
    return all(shutil.which(t) or (bindir / t).exists() for t in ("cmake", "ninja", "ccache"))


def copy_fixture(dest: Path, *, with_buildtools: bool = False) -> Path:
    shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("cmake-build-*", "*.so", "__pycache__"))
    if with_buildtools:  # a PEP 517 backend-path must lie inside the project
        shutil.copytree(ROOT / "buildtools", dest / "buildtools", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def loop_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["CCACHE_DIR"] = str(cache_dir)  # private: hit counts are ours alone
    env["TORCH_CUDA_ARCH_LIST"] = ARCH
    for var in ("MAX_JOBS", "NVCC_THREADS", "CMAKE_BUILD_TYPE", "CUDACXX", "CMAKE_CUDA_COMPILER"):
        env.pop(var, None)
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "buildtools", *args],
        cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def build(src: Path, env: dict[str, str], *extra: str) -> tuple[int, dict | None, str]:
    """``python -m buildtools build --json`` on ``src``: (exit code, summary, stderr)."""
    p = run_cli("build", "--source-dir", str(src), "--json", "--no-progress", *extra, env=env)
    try:
        summary = json.loads(p.stdout) if p.stdout.strip() else None
    except ValueError:
        summary = None
    return p.returncode, summary, p.stderr


def fx_value(src: Path, python: str = sys.executable) -> int:
    """What the built module says, in a fresh interpreter (no module caching)."""
    out = subprocess.run(
        [python, "-c", "import looppkg; print(looppkg.value())"],
        cwd=src, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


def set_fx_value(src: Path, value: int) -> None:
    path = src / "csrc" / "value.cu"
    path.write_text(re.sub(r"#define FX_VALUE \d+", f"#define FX_VALUE {value}", path.read_text()))


# -- the real project (csrc/) ----------------------------------------------------------------------


def copy_checkout(dest: Path) -> Path:
    """The tracked (and new, not ignored) files of this checkout, nothing built."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    for rel in sorted(set(filter(None, out.split("\0")))):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def checkout_env(**extra: str) -> dict[str, str]:
    """Like the session build of csrc/ in tests/conftest.py (one arch, the user's compiler cache),
    so a copy built with it is served from that build's cache entries."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for var in ("MAX_JOBS", "NVCC_THREADS", "CMAKE_BUILD_TYPE", "CMAKE_ARGS", "CCACHE_DIR"):
        env.pop(var, None)
    env["TORCH_CUDA_ARCH_LIST"] = ARCH
    env.update(extra)
    return env


def built_fixture(tmp: Path, **env_extra: str) -> tuple[Path, dict[str, str], dict]:
    """A copy of the loop fixture in ``tmp``, its own ccache, built once: (src, env, summary)."""
    src = copy_fixture(tmp / "project")
    env = loop_env(tmp / "ccache", **env_extra)
    rc, summary, err = build(src, env)
    assert rc == 0, err
    return src, env, summary


def built_checkout(tmp: Path) -> tuple[Path, dict[str, str], dict]:
    """A copy of this checkout in ``tmp``, built by ``buildtools build`` from the session build's
    compiler cache (tests/conftest.py): (src, env, summary)."""
    src = copy_checkout(tmp / "kernloop")
    env = checkout_env()
    rc, summary, err = build(src, env)
    assert rc == 0, err
    return src, env, summary


def one_kernel_tu(build_dir: Path) -> str:
    """A torch-free kernel TU of _C: the CUDA one when CUDA is built, else the CPU one."""
    sources = {Path(e["file"]).as_posix() for e in json.loads((build_dir / "compile_commands.json").read_text())}
    for rel in ("csrc/cuda/activation_kernels.cu", "csrc/cpu/activation.cpp"):
        if any(s.endswith(rel) for s in sources):
            return rel
    raise AssertionError(f"no activation kernel TU in {build_dir}/compile_commands.json")
