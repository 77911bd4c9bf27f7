"""Precompiled torch headers for the glue TUs (KERNLOOP_PCH): real builds of a copy of this
checkout after the session's csrc build (tests/conftest.py), real edits, ninja's log."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _loop import build, built_checkout
from buildtools.cmake import ninja

pytestmark = [pytest.mark.integration]

GLUE = ("csrc/ops.cpp", "csrc/torch_bindings.cpp", "csrc/moe/moe_ops.cpp", "csrc/moe/torch_bindings.cpp")
SLOPPY = "sloppiness=pch_defines,time_macros,include_file_mtime,include_file_ctime"


def _commands(build_dir: Path) -> dict[str, str]:
    entries = json.loads((build_dir / "compile_commands.json").read_text())
    return {os.path.relpath(e["file"], build_dir.parent): e["command"] for e in entries}


@pytest.fixture(scope="module")
def checkout(kernloop_build, tmp_path_factory):
    if kernloop_build.build_dir is None:
        pytest.skip("KERNLOOP_TEST_INPLACE=1: no csrc build in this session to reuse")
    src, env, summary = built_checkout(tmp_path_factory.mktemp("pch"))
    return src, env, summary


def test_only_the_glue_tus_use_the_torch_pch_and_cudas_stay_torch_free(checkout):
    src, _, _ = checkout
    commands = _commands(src / "cmake-build-release")
    for tu in GLUE:
        assert "cmake_pch.hxx" in commands[tu], tu
    others = [tu for tu in commands if tu not in GLUE and tu.startswith("csrc/")]  # (not the PCH itself)
    assert others and all("cmake_pch" not in commands[tu] for tu in others)
    assert any(tu.endswith(".cu") for tu in others)
    if "ccache" in commands[GLUE[0]]:  # ccache's precompiled-header settings, on the glue TUs only
        assert all(SLOPPY in commands[tu] for tu in GLUE)
        assert not any(SLOPPY in commands[tu] for tu in others)
    assert (src / "cmake-build-release" / "CMakeFiles" / "_C.dir" / "cmake_pch.hxx.gch").is_file()
    assert not (src / "cmake-build-release" / "CMakeFiles" / "_moe_C.dir" / "cmake_pch.hxx.gch").exists()  # reused


def test_the_pch_and_the_glue_are_compiler_cache_hits_in_a_new_tree(checkout):
    _, _, first = checkout
    assert "cmake_pch.hxx" in first["rebuilt"]
    cache = first["cache"]
    assert cache["tool"] != "ccache" or (cache["hits"] == len(first["rebuilt"]) and cache["misses"] == 0), cache


def test_a_real_glue_edit_rebuilds_that_tu_not_the_pch(checkout):
    src, env, _ = checkout
    build_dir = src / "cmake-build-release"
    before = ninja.read_log(build_dir / ".ninja_log")
    ops = src / "csrc" / "ops.cpp"
    nonce = time.time_ns()  # never compiled before: the user's compiler cache cannot serve it
    ops.write_text(ops.read_text() + f"\nnamespace {{ [[maybe_unused]] constexpr long kPchTestEdit{nonce} = {nonce}; }}\n")
    rc, summary, err = build(src, env)
    assert rc == 0, err
    ran = sorted(e.output for e in ninja.ran_between(before, ninja.read_log(build_dir / ".ninja_log")))
    assert ran == sorted(["CMakeFiles/_C.dir/csrc/ops.cpp.o", "_C.abi3.so"])
    assert (summary["cache"]["hits"], summary["cache"]["misses"]) == (0, 1) or summary["cache"]["tool"] != "ccache"


def test_kernloop_pch_off_configures_without_it(checkout):
    src, env, _ = checkout
    cmake = str(Path(sys.executable).parent / "cmake")
    off = src / "cmake-build-nopch"
    p = subprocess.run([cmake, "--preset", "release", "-B", str(off), "-DKERNLOOP_PCH=OFF"], cwd=src, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "precompiled torch headers OFF" in p.stdout
    assert not any("cmake_pch" in c for c in _commands(off).values())
