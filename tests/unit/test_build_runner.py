"""The build runner's decisions, presets resolution, install staging and display (no compiler)."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from pathlib import Path

import pytest

from buildtools.run import state as build_state
from buildtools.cmake import file_api
from buildtools.run import install
from buildtools.cmake import presets
from buildtools.run import progress
from buildtools.run.result import BuildResult
from buildtools.cmake import ninja
from buildtools.cache.launcher import CacheStats
from buildtools.errors import KernloopError
from buildtools.util.lock import INFO_NAME, LOCK_NAME
from fake_facts import make_facts


def write_presets(src: Path, user: dict | None = None, ours: dict | None = None) -> None:
    ours = ours or {
        "version": 6,
        "configurePresets": [
            {"name": "kernloop-base", "hidden": True, "generator": "Ninja",
             "cacheVariables": {"NVCC_THREADS": "2", "TORCH_CUDA_ARCH_LIST": "9.0"}, "environment": {"CCACHE_BASEDIR": "${sourceDir}"}},
            {"name": "release", "inherits": "kernloop-base", "binaryDir": "${sourceDir}/cmake-build-${presetName}",
             "cacheVariables": {"CMAKE_BUILD_TYPE": "Release"}},
        ],
        "buildPresets": [{"name": "release", "configurePreset": "release", "jobs": 2, "targets": ["install"]}],
    }  # fmt: skip
    (src / "CMakeUserPresets.json").write_text(json.dumps(ours))
    if user is not None:
        (src / "CMakePresets.json").write_text(json.dumps(user))


def test_resolve_preset_follows_inherits_and_macros(tmp_path: Path):
    write_presets(tmp_path)
    p = presets.resolve_preset(tmp_path, "release")
    assert p is not None
    assert p.binary_dir == tmp_path / "cmake-build-release"
    assert p.has_build_preset
    assert presets.resolve_preset(tmp_path, "nope") is None


def test_preset_digest_changes_with_inherited_cache_variables(tmp_path: Path):
    write_presets(tmp_path)
    before = presets.resolve_preset(tmp_path, "release").digest
    doc = json.loads((tmp_path / "CMakeUserPresets.json").read_text())
    doc["configurePresets"][0]["cacheVariables"]["TORCH_CUDA_ARCH_LIST"] = "8.0"
    (tmp_path / "CMakeUserPresets.json").write_text(json.dumps(doc))
    assert presets.resolve_preset(tmp_path, "release").digest != before
    doc["configurePresets"][1]["displayName"] = "cosmetic"  # does not feed the configure step
    (tmp_path / "CMakeUserPresets.json").write_text(json.dumps(doc))
    after = presets.resolve_preset(tmp_path, "release").digest
    doc["configurePresets"][1].pop("displayName")
    (tmp_path / "CMakeUserPresets.json").write_text(json.dumps(doc))
    assert presets.resolve_preset(tmp_path, "release").digest == after


def test_user_preset_in_cmakepresets_resolves_relative_binary_dir(tmp_path: Path):
    write_presets(tmp_path, user={"version": 6, "configurePresets": [
        {"name": "mine", "inherits": "release", "binaryDir": "out/mine"}]})  # fmt: skip
    p = presets.resolve_preset(tmp_path, "mine")
    assert p.binary_dir == tmp_path / "out" / "mine"
    assert not p.has_build_preset


def test_invalid_presets_json_is_a_user_error(tmp_path: Path):
    (tmp_path / "CMakeUserPresets.json").write_text("{ not json")
    with pytest.raises(KernloopError, match="CMakeUserPresets.json"):
        presets.resolve_preset(tmp_path, "release")


def test_configure_reasons(tmp_path: Path):
    write_presets(tmp_path)
    preset = presets.resolve_preset(tmp_path, "release")
    bd = tmp_path / "b"
    bd.mkdir()
    fp = {"python": ["/p", "3.11.7"]}
    state = {"fingerprint": fp, "preset": preset.digest}
    assert build_state.configure_reason(bd, state, preset, fp) == "no CMake cache yet"
    (bd / "CMakeCache.txt").write_text("CMAKE_HOME_DIRECTORY:INTERNAL=/src\n")  # what CMake always writes
    assert build_state.configure_reason(bd, state, preset, fp) == "no build.ninja"
    (bd / "build.ninja").write_text("")
    assert build_state.configure_reason(bd, state, preset, fp) is None
    assert build_state.configure_reason(bd, state, preset, {"python": ["/other", "3.12.1"]}) == "the toolchain changed"
    assert build_state.configure_reason(bd, {**state, "preset": "old"}, preset, fp) == "preset 'release' changed"


def test_fingerprint_tracks_toolchain_and_overrides_not_cores_or_ram():
    facts = make_facts()
    base = build_state.facts_fingerprint(facts, {})
    assert build_state.facts_fingerprint(dataclasses.replace(facts, cpus=make_facts(cores=3).cpus,
                                                       memory=make_facts(ram_gib=2).memory), {}) == base  # fmt: skip
    assert build_state.facts_fingerprint(make_facts(nvcc_version="12.8"), {}) != base
    assert build_state.facts_fingerprint(make_facts(torch_cuda=None), {}) != base
    assert build_state.facts_fingerprint(facts, {"TORCH_CUDA_ARCH_LIST": "9.0"}) != base
    assert build_state.facts_fingerprint(facts, {"TORCH_CUDA_ARCH_LIST": "  "}) == base  # empty = unset
    assert build_state.facts_fingerprint(facts, {"UNRELATED": "1"}) == base
    # a plugin platform's toolchain (Facts.extra) shapes the presets like nvcc does
    rocm = dataclasses.replace(facts, extra={"rocm": {"hipcc": "/opt/rocm/bin/hipcc", "version": "6.4"}})
    assert build_state.facts_fingerprint(rocm, {}) != base
    newer = dataclasses.replace(facts, extra={"rocm": {"hipcc": "/opt/rocm/bin/hipcc", "version": "7.0"}})
    assert build_state.facts_fingerprint(newer, {}) != build_state.facts_fingerprint(rocm, {})


def test_read_cmake_cache(tmp_path: Path):
    (tmp_path / "CMakeCache.txt").write_text(
        "# comment\n//help\nCMAKE_INSTALL_PREFIX:PATH=/src dir\nCMAKE_CXX_COMPILER_LAUNCHER:STRING=/v/bin/ccache\n"
        "NOTYPE=1\n"
    )
    cache = file_api.read_cmake_cache(tmp_path)
    assert cache == {"CMAKE_INSTALL_PREFIX": "/src dir", "CMAKE_CXX_COMPILER_LAUNCHER": "/v/bin/ccache", "NOTYPE": "1"}
    assert file_api.read_cmake_cache(tmp_path / "missing") == {}


def test_clean_keeps_lock_and_state(tmp_path: Path):
    for name in (LOCK_NAME, INFO_NAME, build_state.STATE_NAME, "CMakeCache.txt", ".ninja_log"):
        (tmp_path / name).write_text("x")
    (tmp_path / "CMakeFiles" / "t.dir").mkdir(parents=True)
    (tmp_path / "CMakeFiles" / "t.dir" / "a.o").write_text("x")
    os.symlink(tmp_path / "CMakeCache.txt", tmp_path / "link")
    build_state.clean_build_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOCK_NAME, INFO_NAME, build_state.STATE_NAME])


# -- install staging with a real cmake install script ---------------------------------------------

INSTALL_SCRIPT = """
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/pkg" TYPE MODULE FILES "${CMAKE_CURRENT_LIST_DIR}/mod.so")
"""


def cmake_exe() -> str:
    local = Path(sys.executable).parent / "cmake"
    return str(local) if local.exists() else "cmake"


def test_install_atomically_renames_changed_files_only(tmp_path: Path):
    bd = tmp_path / "build"
    bd.mkdir()
    (bd / "cmake_install.cmake").write_text(INSTALL_SCRIPT)
    (bd / "mod.so").write_bytes(b"v1")
    prefix = tmp_path / "src"
    (prefix / "pkg").mkdir(parents=True)
    dest = prefix / "pkg" / "mod.so"
    dest.write_bytes(b"v0")
    inode = dest.stat().st_ino

    first = install.install_atomically(cmake_exe(), bd, prefix)
    assert first == (install.InstalledFile(dest, True),)
    assert dest.read_bytes() == b"v1" and dest.stat().st_ino != inode  # a new file, renamed in
    again = install.install_atomically(cmake_exe(), bd, prefix)
    assert again == (install.InstalledFile(dest, False),)
    assert not (bd / ".kernloop-stage").exists()
    assert sorted(p.name for p in (prefix / "pkg").iterdir()) == ["mod.so"]  # no temp files left


def _configured(tmp_path: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    """A real CMake project that installs ``names`` (files in the build dir) into ``pkg/``:
    CMake's generated install script, manifest included."""
    import subprocess

    src, bd = tmp_path / "proj", tmp_path / "build"
    src.mkdir()
    files = " ".join(f'"${{CMAKE_BINARY_DIR}}/{n}"' for n in names)
    (src / "CMakeLists.txt").write_text(f"cmake_minimum_required(VERSION 3.26)\nproject(p NONE)\n"
                                        f"install(PROGRAMS {files} DESTINATION pkg)\n")
    subprocess.run([cmake_exe(), "-S", src, "-B", bd], check=True, capture_output=True)
    return bd, tmp_path / "prefix"


def _aged(path: Path, data: bytes, age_s: float) -> None:
    path.write_bytes(data)
    t = path.stat().st_mtime_ns - int(age_s * 1e9)
    os.utime(path, ns=(t, t))


def test_a_kept_stage_copies_only_what_changed(tmp_path: Path):
    bd, prefix = _configured(tmp_path, ("a.so", "b.so"))
    _aged(bd / "a.so", b"a1", 10)
    _aged(bd / "b.so", b"b1" * 1000, 10)
    first = install.install_atomically(cmake_exe(), bd, prefix)
    assert [f.changed for f in first] == [True, True]
    staged_b = bd / ".kernloop-stage" / "pkg" / "b.so"
    assert not staged_b.exists()  # renamed into place, not copied
    assert [f.changed for f in install.install_atomically(cmake_exe(), bd, prefix)] == [False, False]
    inode = staged_b.stat().st_ino  # staged again, and kept: its source is settled
    (bd / "a.so").write_bytes(b"a2")  # a relink: a new mtime
    again = install.install_atomically(cmake_exe(), bd, prefix)
    assert [(f.path.name, f.changed) for f in again] == [("a.so", True), ("b.so", False)]
    assert staged_b.stat().st_ino == inode  # CMake left it: its source did not change
    assert (prefix / "pkg" / "a.so").read_bytes() == b"a2" and (prefix / "pkg" / "b.so").read_bytes() == b"b1" * 1000


def test_a_change_inside_cmakes_one_second_window_is_installed(tmp_path: Path):
    """CMake calls mtimes under a second apart the same: a copy of a just-linked file is never
    kept in the stage, so a second link in the same second is installed."""
    bd, prefix = _configured(tmp_path, ("a.so",))
    (bd / "a.so").write_bytes(b"v1")
    install.install_atomically(cmake_exe(), bd, prefix)
    assert install.install_atomically(cmake_exe(), bd, prefix)[0].changed is False
    t = (bd / "a.so").stat().st_mtime_ns
    (bd / "a.so").write_bytes(b"v2")  # same size, and ...
    os.utime(bd / "a.so", ns=(t + 300_000_000, t + 300_000_000))  # ... 0.3 s later
    assert install.install_atomically(cmake_exe(), bd, prefix)[0].changed is True
    assert (prefix / "pkg" / "a.so").read_bytes() == b"v2"


def test_a_file_left_in_the_stage_is_not_installed(tmp_path: Path):
    bd, prefix = _configured(tmp_path, ("a.so",))
    _aged(bd / "a.so", b"a1", 10)
    install.install_atomically(cmake_exe(), bd, prefix)
    (bd / ".kernloop-stage" / "pkg" / "gone.so").write_bytes(b"a target removed since")
    installed = install.install_atomically(cmake_exe(), bd, prefix)
    assert [f.path.name for f in installed] == ["a.so"] and not (prefix / "pkg" / "gone.so").exists()
    assert not (bd / ".kernloop-stage" / "pkg" / "gone.so").exists()  # and it is not kept either


def test_install_failure_is_reported_not_raised_as_traceback(tmp_path: Path):
    bd = tmp_path / "build"
    bd.mkdir()
    (bd / "cmake_install.cmake").write_text('message(FATAL_ERROR "boom")\n')
    lines: list[str] = []
    with pytest.raises(install.InstallFailed):
        install.install_atomically(cmake_exe(), bd, tmp_path / "src", on_line=lines.append)
    assert any("boom" in line for line in lines)


# -- display ------------------------------------------------------------------------------------------


def test_progress_lines_without_a_terminal():
    out = io.StringIO()
    p = progress.Progress(out, tty=False)
    p.update(ninja.Status(3, 16, 2, 4.5, "Building CUDA object CMakeFiles/_C.dir/csrc/cuda/x.cu.o"))
    p.update(ninja.Status(16, 16, 1, 9.0, "Linking CXX shared module _C.abi3.so"))
    p.clear()
    assert out.getvalue() == "[3/16] csrc/cuda/x.cu\n[16/16] Linking CXX shared module _C.abi3.so\n"


def test_progress_bar_on_a_terminal_redraws_one_line():
    out = io.StringIO()
    p = progress.Progress(out, tty=True)
    p.update(ninja.Status(8, 16, 2, 4.5, "Building CXX object CMakeFiles/_C.dir/csrc/ops.cpp.o"))
    p.clear()
    text = out.getvalue()
    assert "\n" not in text and text.startswith("\r[############............] 8/16")
    assert "csrc/ops.cpp" in text and text.endswith("\r")


def result(**kw) -> BuildResult:
    base = dict(ok=True, preset="release", build_dir=Path("/s/cmake-build-release"), log_path=Path("/s/cmake-build-release/kernloop-build.log"),
                elapsed_s=2.5, steps=("presets: up to date", "configure: not needed"))  # fmt: skip
    base.update(kw)
    return BuildResult(**base)


def test_summary_lists_rebuilt_tus_cache_slowest_and_installed():
    ran = (
        ninja.LogEntry(0, 2100, 0, "CMakeFiles/_C.dir/csrc/cuda/act.cu.o", "h"),
        ninja.LogEntry(0, 5800, 0, "CMakeFiles/_C.dir/csrc/ops.cpp.o", "h"),
        ninja.LogEntry(5800, 6300, 0, "_C.abi3.so", "h"),
    )
    r = result(ran=ran, cache=CacheStats("ccache", 1, 1, 0, True),
               installed=(install.InstalledFile(Path("/s/kernloop/_C.abi3.so"), True),
                          install.InstalledFile(Path("/s/kernloop/_moe_C.abi3.so"), False)))  # fmt: skip
    text = r.summary()
    assert "TUs rebuilt: 2 (csrc/cuda/act.cu, csrc/ops.cpp)" in text
    assert "linked: _C.abi3.so" in text
    assert "compiler cache: ccache: 1/2 hits (50%)" in text
    assert "slowest TUs: csrc/ops.cpp 5.8s, csrc/cuda/act.cu 2.1s" in text
    assert "/s/kernloop/_moe_C.abi3.so (unchanged)" in text
    data = r.to_json()
    assert data["steps"] == {"presets": "up to date", "configure": "not needed"}
    assert data["rebuilt"] == ["csrc/cuda/act.cu", "csrc/ops.cpp"] and data["cache"]["hit_rate"] == 0.5


def test_failed_summary_shows_the_error_and_the_log():
    r = result(ok=False, failure='error: build failed (exit 1); first error:\nx.cu(3): error: bad')
    text = r.summary()
    assert text.startswith("FAILED: preset release")
    assert "x.cu(3): error: bad" in text and "full log: /s/cmake-build-release/kernloop-build.log" in text
