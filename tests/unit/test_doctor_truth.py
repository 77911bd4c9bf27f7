"""doctor tells the truth and failures say their cause: the first real error line of each kind on the
summary line, a build log on a full device, the readers doctor uses on any bytes (fuzzed), install
compared by content, and the fix each finding names."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildtools.checks import observe_tree as tree
from buildtools.checks.doctor import run_checks
from buildtools.checks.observe_tree import FileProblem, StaleProgram, Unwritable
from buildtools.checks.orphans import LockView, observe_lock
from buildtools.util.lock import Process
from buildtools.checks.tree_checks import lock_checks, tree_checks
from buildtools.cmake import ninja
from buildtools.cmake.file_api import read_cmake_cache
from buildtools.run import install
from buildtools.run.log import BuildLog
from buildtools.run.result import failure_text
from buildtools.util.lock import BuildLock, Holder
from fake_facts import make_facts
from test_doctor import SRC, obs

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- the first real error, on the summary line ------------------------------------------------------


@pytest.mark.parametrize("lines, cause", [
    (["ninja: error: loading 'build.ninja': No such file or directory"], "ninja: error: loading 'build.ninja'"),
    (["[2/3] Linking CXX shared module _C.abi3.so", "FAILED: _C.abi3.so", "g++ -shared -o _C.abi3.so x.o",
      "/usr/bin/ld: final link failed: No space left on device", "collect2: error: ld returned 1 exit status"],
     "/usr/bin/ld: final link failed: No space left on device"),
    (["FAILED: x.o", "c++ -c x.cpp", "cc1plus: fatal error: x.o: No space left on device"], "No space left on device"),
    (["CMake Error at CMakeLists.txt:7 (message):", "  the toolkit is broken", "", "-- Configuring incomplete"],
     "CMake Error at CMakeLists.txt:7 (message): the toolkit is broken"),
    (["CMake Error: Generator: build tool execution failed, command was: /gone/ninja -j 2 all"], "/gone/ninja"),
    (["cp: cannot create regular file 'kernloop/_C.abi3.so': Read-only file system"], "Read-only file system"),
    (["/bin/sh: 1: ./gen.sh: Permission denied"], "Permission denied"),
])  # fmt: skip
def test_the_first_real_error_is_on_the_summary_line(lines, cause):
    text = failure_text("build failed (cmake --build exited 1)", ninja.first_error(lines))
    first = text.splitlines()[0]
    assert first.startswith("error: build failed (cmake --build exited 1): ") and cause in first, text


@pytest.mark.parametrize("line, fix", [
    ("/usr/bin/ld: final link failed: No space left on device", "free some disk space"),
    ("cp: cannot create 'x': Read-only file system", "read-write"),
    ("/bin/sh: ./gen.sh: Permission denied", "writable"),
    ("x.cu(3): error: bad", None),
])  # fmt: skip
def test_a_cause_in_the_machine_names_its_fix(line, fix):
    first = failure_text("build failed (exit 1)", ninja.first_error([line])).splitlines()[0]
    assert (" -- " in first and fix in first) if fix else " -- " not in first


def test_a_compile_error_keeps_its_source_line_and_caret_below():
    text = failure_text("build failed (exit 1)", ninja.first_error(["FAILED: x.o", "nvcc -c x.cu", "x.cu(3): error: bad",
                                                                     "  int y = bad;", "          ^"]))  # fmt: skip
    assert text.splitlines() == ["error: build failed (exit 1): x.cu(3): error: bad", "  int y = bad;", "          ^",
                                 "(while building x.o)"]  # fmt: skip


# -- a build log on a full device ------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("lines", [3, 5000])  # buffered: fails on close; many lines: fails on write
def test_a_build_log_on_a_full_device_is_a_problem_not_a_traceback(lines):
    log = BuildLog(Path("/dev/full"))
    log.open()
    for i in range(lines):
        log.write(f"line {i} " + "x" * 40)
    log.close()
    problem = log.problem()
    assert problem is not None
    assert problem.one_line() == ("error: cannot write the build log /dev/full: No space left on device -- free some "
                                  "disk space on the filesystem of /dev (df -h /dev), then run again")  # fmt: skip


# -- install by content ----------------------------------------------------------------------------

INSTALL_SCRIPT = """
if(NOT CMAKE_INSTALL_PREFIX)
  set(CMAKE_INSTALL_PREFIX "/nonexistent")
endif()
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/kernloop" TYPE MODULE FILES "${CMAKE_CURRENT_LIST_DIR}/_C.abi3.so")
"""


def _cmake() -> str:
    local = Path(sys.executable).parent / "cmake"
    return str(local) if local.exists() else "cmake"


def test_a_relink_to_the_same_bytes_is_not_pending_install(tmp_path):
    bd, prefix = tmp_path / "build", tmp_path / "src"
    bd.mkdir()
    (bd / "cmake_install.cmake").write_text(INSTALL_SCRIPT)
    (bd / "_C.abi3.so").write_bytes(b"v1")
    install.install_atomically(_cmake(), bd, prefix)
    os.utime(bd / "_C.abi3.so", (2e9, 2e9))  # relinked later, same bytes: install skips it
    assert install.install_atomically(_cmake(), bd, prefix)[0].changed is False
    view = install.pending_install(_cmake(), bd, prefix)
    assert view is not None and view.changed == () and view.targets == (prefix / "kernloop" / "_C.abi3.so",)
    (bd / "_C.abi3.so").write_bytes(b"v2")
    assert install.pending_install(_cmake(), bd, prefix).changed == (prefix / "kernloop" / "_C.abi3.so",)


def test_pending_install_without_a_build_is_unknown(tmp_path):
    assert install.pending_install(_cmake(), tmp_path, tmp_path / "src") is None


# -- the files doctor reads, as the build reads them ------------------------------------------------

VALID = '{"version": 6, "configurePresets": [{"name": "release", "binaryDir": "${sourceDir}/cmake-build-release"}]}'


def _resolver_reads_a_bom(tmp_path: Path) -> bool:
    from buildtools.cmake.presets import resolve_preset
    from buildtools.errors import KernloopError

    d = tmp_path / "bom-probe"
    d.mkdir()
    (d / "CMakeUserPresets.json").write_text("\ufeff" + VALID, encoding="utf-8")
    try:
        return resolve_preset(d, "release") is not None
    except KernloopError:
        return False


def test_invalid_presets_json_is_a_problem_with_its_line_and_the_regenerate_fix(tmp_path):
    (tmp_path / "CMakeUserPresets.json").write_text('{\n  "version": 6,\n  "configurePresets": [,]\n}\n')
    p = tree.presets_problem(tmp_path, "release")
    assert p is not None and "invalid JSON" in p.message and "(line 3)" in p.fix and tree.REGENERATE in p.fix


def test_presets_with_a_utf8_bom_are_accepted_as_cmake_accepts_them(tmp_path):
    if not _resolver_reads_a_bom(tmp_path):
        pytest.skip("buildtools.cmake.presets.resolve_preset does not read a BOM yet (the presets work)")
    (tmp_path / "CMakeUserPresets.json").write_bytes("\ufeff".encode() + VALID.encode())
    assert tree.presets_problem(tmp_path, "release") is None


def test_a_bom_passes_the_json_check_itself(tmp_path):
    (tmp_path / "CMakePresets.json").write_bytes(b"\xef\xbb\xbf" + b'{"version": 6, "configurePresets": [,]}')
    p = tree.presets_problem(tmp_path, "release")
    assert p is not None and "BOM" not in p.message and "invalid JSON" in p.message  # the real fault, past the BOM
    assert "kernloop never writes it" in p.fix


@pytest.mark.parametrize("text, words", [
    ('[tool.buildtools]\nlauncher = "distcc"\n', "launcher must be one of"),
    ("[tool.buildtools\n", "invalid TOML"),
])  # fmt: skip
def test_an_invalid_tool_buildtools_is_a_problem(tmp_path, text, words):
    (tmp_path / "pyproject.toml").write_text(text)
    p = tree.config_problem(tmp_path)
    assert p is not None and words in p.message and p.fix


def test_a_cached_build_tool_that_is_gone_or_does_not_run(tmp_path):
    assert tree.stale_make_program({"CMAKE_MAKE_PROGRAM": str(tmp_path / "gone" / "ninja")}).why == "no longer exists"
    broken = tmp_path / "ninja"
    broken.write_text("#!/bin/sh\necho 'ninja: broken venv' >&2\nexit 3\n")
    broken.chmod(0o755)
    assert tree.stale_make_program({"CMAKE_MAKE_PROGRAM": str(broken)}).why == "does not run (ninja: broken venv)"
    assert tree.stale_make_program({"CMAKE_MAKE_PROGRAM": "/bin/true"}) is None
    assert tree.stale_make_program({}) is None


def test_writability_is_tried_for_real_not_asked(tmp_path):
    assert tree.unwritable([tmp_path, tmp_path / "not-made-yet" / "build"]) == ()
    (tmp_path / "file").write_text("")
    assert tree.unwritable([tmp_path / "file"]) == ()  # not a directory: nothing the build writes into


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_presets_bytes_never_raise(tmp_path, data):
    (tmp_path / "CMakeUserPresets.json").write_bytes(data)
    p = tree.presets_problem(tmp_path, "release")
    assert p is None or (p.message and p.fix)
    tree.build_dir_for(tmp_path, "release")


@FUZZ
@given(doc=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                            st.sampled_from(["version", "configurePresets", "buildPresets", "name", "inherits",
                                             "binaryDir", "cacheVariables", "environment", "x"]), inner, max_size=4),
                        max_leaves=12))  # fmt: skip
def test_fuzz_presets_structures_never_raise(tmp_path, doc):
    import json

    (tmp_path / "CMakeUserPresets.json").write_text(json.dumps(doc))
    p = tree.presets_problem(tmp_path, "release")
    assert p is None or (p.message and p.fix)


@FUZZ
@given(data=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: ("[tool.buildtools]\n" + t).encode()))
def test_fuzz_pyproject_bytes_never_raise(tmp_path, data):
    (tmp_path / "pyproject.toml").write_bytes(data)
    p = tree.config_problem(tmp_path)
    assert p is None or (p.message and p.fix)


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=120).map(lambda t: f"CMAKE_MAKE_PROGRAM:FILEPATH={t}\n".encode()))
def test_fuzz_cmake_cache_never_raises(tmp_path, data):
    (tmp_path / "CMakeCache.txt").write_bytes(data)
    cache = read_cmake_cache(tmp_path)
    found = tree.stale_make_program(cache)
    o = obs(make_program=found, presets=tree.presets_problem(tmp_path, "release"), config=tree.config_problem(tmp_path))
    assert run_checks(make_facts(source_dir=SRC), o)


# -- each finding names the fix that clears it --------------------------------------------------------


@pytest.mark.parametrize("kind, fix", [
    ("read-only-fs", "remount /mnt read-write"), ("not-permitted", "chattr -i /mnt/src/kernloop"),
    ("permission", "chmod u+w /mnt/src/kernloop"), ("no-space", "free some disk space"),
])  # fmt: skip
def test_an_unwritable_directory_is_an_error_with_the_fix_for_its_cause(kind, fix):
    o = obs(unwritable=(Unwritable(Path("/mnt/src/kernloop"), "why", kind, Path("/mnt")),))
    (f,) = [f for f in tree_checks(o) if f.check == "writable"]
    assert f.level == "error" and fix in f.fix


def test_the_new_checks_are_errors_with_fixes():
    o = obs(presets=FileProblem(SRC / "CMakeUserPresets.json", "invalid JSON", "regenerate"),
            config=FileProblem(SRC / "pyproject.toml", "bad launcher", "fix launcher"),
            make_program=StaleProgram("CMAKE_MAKE_PROGRAM", "/gone/ninja", "no longer exists"))  # fmt: skip
    found = {f.check: f for f in tree_checks(o)}
    assert {c: found[c].level for c in ("presets", "config", "build-tool")} == dict.fromkeys(("presets", "config", "build-tool"), "error")
    assert "--clean" in found["build-tool"].fix and all(f.fix for f in found.values() if f.level != "ok")


def test_a_healthy_tree_has_no_new_warnings():
    assert all(f.level == "ok" for f in tree_checks(obs()))


def test_a_running_build_is_a_note_an_orphan_a_warning_naming_the_processes(tmp_path):
    holder = Holder(4242, "python -m buildtools build", 0.0, "")
    running = LockView(tmp_path, True, holder, True, ())
    assert [f.level for f in lock_checks(obs(lock=running))] == ["note"]
    orphan = LockView(tmp_path, False, holder, False, (Process(4300, "ninja -j 2"), Process(4301, "nvcc -c x.cu")))
    (f,) = lock_checks(obs(lock=orphan))
    assert f.level == "warning" and "pid 4300 (ninja -j 2)" in f.message and f.fix.endswith("kill 4300 4301")
    stale_info = LockView(tmp_path, False, holder, False, ())  # killed, nothing left: nothing to do
    assert [f.level for f in lock_checks(obs(lock=stale_info))] == ["ok"]


def test_observe_lock_sees_a_live_holder_and_not_itself(tmp_path):
    with BuildLock(tmp_path, command="holder --for-test"):
        view = observe_lock(tmp_path)
        assert view is not None and view.holder_alive and view.holder.pid == os.getpid() and not view.orphaned
    assert observe_lock(tmp_path / "nothing-here") is None
