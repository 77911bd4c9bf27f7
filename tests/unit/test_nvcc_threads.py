"""nvcc --threads per build: the sh launcher's rewrite, and the build's decision (no compiler)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from buildtools.cache.nvcc_threads import WRAPPER, pending_compiles, threads_for_run

ECHO = ["printf", "%s\\n"]


def _run(env_value: str | None, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "KERNLOOP_NVCC_THREADS_NOW"}
    if env_value is not None:
        env["KERNLOOP_NVCC_THREADS_NOW"] = env_value
    out = subprocess.run([str(WRAPPER), *ECHO, *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_the_launcher_raises_threads_up_to_the_gencode_count():
    cmd = ["-c", "x.cu", "--threads=1", "-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
           "-o", "x o"]  # an argument with a space survives
    assert _run(None, *cmd) == cmd  # not set: the command as ninja wrote it
    assert _run("2", *cmd) == [a if a != "--threads=1" else "--threads=2" for a in cmd]
    assert _run("8", *cmd)[2] == "--threads=2"  # two gencodes: two threads are all nvcc can use
    assert _run("8", "--threads=4", "--generate-code=arch=compute_90,code=[sm_90]") == [
        "--threads=4", "--generate-code=arch=compute_90,code=[sm_90]"]  # never lowered
    assert _run("junk", *cmd) == cmd


def test_pending_compiles_reads_ninja_dry_run():
    lines = ["ninja: Entering directory `b'", "[1/4] Building CUDA object CMakeFiles/_C.dir/csrc/a.cu.o",
             "[2/4] Building CXX object CMakeFiles/_C.dir/csrc/ops.cpp.o", "[3/4] Linking CXX shared module _C.abi3.so"]
    assert pending_compiles(lines) == (1, 2)
    assert pending_compiles(["ninja: no work to do."]) == (0, 0)
    assert pending_compiles(["[1/1] Re-running CMake..."]) is None


@pytest.mark.parametrize("cuda, compiles, cores, planned, want", [
    (1, 1, 2, 1, 2),  # the case: one dirty .cu on 2 cores
    (1, 1, 16, 4, 16),  # the launcher caps it at the TU's gencodes
    (2, 2, 2, 1, None),  # two TUs share two cores: the plan's 1
    (1, 3, 16, 4, 5),
    (0, 1, 16, 4, None),  # no CUDA TU
    (1, 1, 2, 2, None),  # the plan already gives them
])
def test_threads_for_run(cuda, compiles, cores, planned, want):
    assert threads_for_run(cuda, compiles, cores, planned) == want
