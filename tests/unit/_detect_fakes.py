"""Fake toolkits, interpreters and torch installs for the detection tests.

They stand for machines we do not have (another CUDA release, a CPU-only torch, a
toolkit under a path with spaces): small shell scripts that print what the real
programs print, byte for byte where it matters (nvcc's ``#$ TOP=`` lines go to stderr).
"""
from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

NVCC_128_VERSION = """\
nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Fri_Feb_21_20:23:50_PST_2025
Cuda compilation tools, release 12.8, V12.8.93
Build cuda_12.8.r12.8/compiler.35583870_0
"""

# What nvcc 12.8 lists; the arch-specific "a" variants are listed by some releases.
NVCC_128_ARCHS = (
    "compute_50\ncompute_52\ncompute_53\ncompute_60\ncompute_61\ncompute_62\ncompute_70\ncompute_72\n"
    "compute_75\ncompute_80\ncompute_86\ncompute_87\ncompute_89\ncompute_90\ncompute_90a\ncompute_100\n"
    "compute_100a\ncompute_101\ncompute_120\ncompute_120a\n"
)


def write_script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_toolkit(root: Path, version_text: str = NVCC_128_VERSION, archs: str = NVCC_128_ARCHS) -> Path:
    """A CUDA toolkit at ``root`` whose bin/nvcc answers -dryrun, --version, --list-gpu-arch.

    Like the real nvcc, -dryrun names the directory it was *called* through (not
    symlink-resolved) in ``_HERE_``, and ``TOP=<that>/..`` (from the ``nvcc.profile``
    there) on stderr.
    """
    (root / "include").mkdir(parents=True, exist_ok=True)
    (root / "include" / "cuda_runtime.h").write_text("// fake\n")
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "bin" / "nvcc.profile").write_text("TOP              = $(_HERE_)/..\n")
    # Shell builtins only: the tests run these with a PATH holding nothing else.
    body = f"""\
here="$(cd "${{0%/*}}" && pwd)"
case "$1" in
  --version) printf '%s' {shlex.quote(version_text)} ;;
  --list-gpu-arch) printf '%s' {shlex.quote(archs)} ;;
  -dryrun)
    printf '#$ _NVVM_BRANCH_=nvvm\\n#$ _SPACE_= \\n#$ _CUDART_=cudart\\n' >&2
    printf '#$ _HERE_=%s\\n#$ _THERE_=%s\\n#$ _TARGET_DIR_=targets/x86_64-linux\\n' "$here" "$here" >&2
    # TOP comes from nvcc.profile next to the program as called: none through a file symlink.
    if [ -f "$here/nvcc.profile" ]; then
      printf '#$ TOP=%s/..\\n#$ CICC_PATH=%s/../nvvm/bin\\n' "$here" "$here" >&2
    fi
    ;;
  *) echo "nvcc fatal   : No input files specified; use option --help for more information" >&2; exit 1 ;;
esac
"""
    return write_script(root / "bin" / "nvcc", body)


def fake_wrapper(path: Path, target: Path) -> Path:
    """A wrapper script like /usr/local/bin/nvcc on our build machine."""
    return write_script(path, f'exec {shlex.quote(str(target))} "$@"\n')


def fake_torch(
    site: Path,
    version: str = "2.14.1+cu130",
    cuda: str | None = "13.0",
    hip: str | None = None,
    abi_flag: str | None = None,
    cmake: bool = True,
) -> Path:
    """A torch package in ``site`` with a version.py as torch writes it and its CMake files."""
    torch = site / "torch"
    torch.mkdir(parents=True, exist_ok=True)
    (torch / "__init__.py").write_text("raise ImportError('the fake torch must never be imported')\n")
    (torch / "version.py").write_text(
        "from typing import Optional\n\n"
        "__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'rocm', 'xpu']\n"
        f"__version__ = {version!r}\n"
        "debug = False\n"
        f"cuda: Optional[str] = {cuda!r}\n"
        "git_version = '5c4886908584029761b579af026dcfb627c84070'\n"
        f"hip: Optional[str] = {hip!r}\n"
        "rocm: Optional[str] = None\n"
        "xpu: Optional[str] = None\n"
    )
    if cmake:
        config = torch / "share" / "cmake" / "Torch" / "TorchConfig.cmake"
        config.parent.mkdir(parents=True, exist_ok=True)
        flags = ""
        if abi_flag is not None:
            flags = (
                'if("${CMAKE_CXX_COMPILER_ID}" STREQUAL "GNU")\n'
                f'  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI={abi_flag}")\nendif()\n'
            )
        config.write_text("# fake TorchConfig.cmake\n" + flags + "if(TORCH_CXX_FLAGS)\nendif()\n")
    return torch


def fake_python(path: Path, site: Path | None) -> Path:
    """This interpreter, started without its own site-packages and with ``site`` (if any)
    on PYTHONPATH: another Python whose torch is the one in ``site`` (or none)."""
    env = f"PYTHONPATH={shlex.quote(str(site))} " if site is not None else "PYTHONPATH= "
    return write_script(path, f'{env}exec {shlex.quote(sys.executable)} -S "$@"\n')


def env_with_path(*dirs: Path, **extra: str) -> dict[str, str]:
    """A minimal environment whose PATH is exactly ``dirs`` (the fakes need nothing else),
    so nothing of this machine's toolchain leaks into a test."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    env["PATH"] = os.pathsep.join(str(d) for d in dirs)
    env.update(extra)
    return env
