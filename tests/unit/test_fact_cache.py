"""The no-op fast path: toolchain facts cached by stat, the install record (no compiler)."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest

import buildtools.detect.sources  # noqa: F401  -- imported before sys.path is narrowed below
from buildtools.cmake.ninja import LogEntry
from buildtools.model import TorchFacts
from buildtools.run import state as build_state
from buildtools.util.stamp import env_digest, key_changes, stat_key
from fake_facts import make_facts

ENV = {"PATH": "/usr/bin", "HOME": "/root"}


def _age(path: Path, seconds: float = 30) -> None:
    """Older than the racy window (a file written this second is not trusted)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_stat_key_sees_edits_appearances_and_removals(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1")
    key = stat_key([str(a), str(b)])
    assert key_changes(key) is None
    b.write_text("new")
    assert key_changes(key) == str(b)  # absent, then present
    b.unlink()
    a.write_text("22")
    assert key_changes(key) == str(a)
    assert key_changes([["only-a-path"]]) == "the record is damaged"


def test_env_digest_ignores_unrelated_variables():
    base = env_digest(ENV, ["PATH"], ["CUDA"])
    assert env_digest({**ENV, "TERM": "xterm"}, ["PATH"], ["CUDA"]) == base
    assert env_digest({**ENV, "CUDA_HOME": "/opt/cuda"}, ["PATH"], ["CUDA"]) != base
    assert env_digest({**ENV, "PATH": "/x:/usr/bin"}, ["PATH"], ["CUDA"]) != base


@pytest.fixture(autouse=True)
def _quiet_sys_path(monkeypatch, tmp_path: Path):
    """sys.path directories are part of the key; pytest writes into its own as it runs."""
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site")])


def _facts_on_disk(tmp_path: Path):
    """Fake facts whose torch lives in ``tmp_path`` (so its files can be edited)."""
    torch_dir = tmp_path / "site" / "torch"
    torch_dir.mkdir(parents=True)
    (torch_dir / "version.py").write_text("__version__ = '2.14.1+cu130'\ncuda = '13.0'\n")
    for p in (torch_dir / "version.py", torch_dir, torch_dir.parent):
        _age(p)
    facts = make_facts(source_dir=tmp_path)
    torch = TorchFacts("2.14.1+cu130", "13.0", None, torch_dir, torch_dir / "share" / "cmake", True, "fake")
    return dataclasses.replace(facts, torch=torch), torch_dir


def test_cached_toolchain_round_trip_and_what_invalidates_it(tmp_path: Path):
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    facts, torch_dir = _facts_on_disk(tmp_path)
    assert build_state.cached_toolchain(build_dir, ENV) == (None, "no facts recorded yet")
    assert build_state.remember_toolchain(build_dir, facts, ENV, time.time_ns(), fallbacks=())
    cached, why = build_state.cached_toolchain(build_dir, ENV)
    assert why == "" and cached is not None and cached.detected == "cached"
    assert cached.fingerprint == build_state.toolchain_of(facts).fingerprint
    # the fingerprint made from the cache is the one detection would give
    assert build_state.fingerprint_of(cached, ENV, tmp_path) == build_state.facts_fingerprint(facts, ENV)

    assert build_state.cached_toolchain(build_dir, {**ENV, "CUDACXX": "/opt/nvcc"})[1] == "the environment changed"
    assert build_state.cached_toolchain(build_dir, {**ENV, "KERNLOOP_RAM_BUDGET": "2G"})[1] == "the environment changed"
    assert build_state.cached_toolchain(build_dir, {**ENV, "TERM": "dumb"})[0] is not None

    (torch_dir / "version.py").write_text("__version__ = '2.15.0+cu130'\ncuda = '13.0'\n")  # pip upgraded torch
    assert build_state.cached_toolchain(build_dir, ENV) == (None, f"{torch_dir / 'version.py'} changed")


def test_a_file_modified_while_detecting_is_not_trusted(tmp_path: Path):
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    facts, torch_dir = _facts_on_disk(tmp_path)
    started = time.time_ns()
    (torch_dir / "version.py").write_text("__version__ = '2.14.1+cu130'\n")  # during detection
    assert not build_state.remember_toolchain(build_dir, facts, ENV, started, fallbacks=())
    assert build_state.cached_toolchain(build_dir, ENV)[0] is None


def test_a_damaged_or_foreign_record_is_a_miss(tmp_path: Path):
    (tmp_path / build_state.FACTS_NAME).write_text("{not json")
    assert build_state.cached_toolchain(tmp_path, ENV) == (None, "the recorded facts are unreadable")
    (tmp_path / build_state.FACTS_NAME).write_text('{"format": 999, "toolchain": {}}')
    assert build_state.cached_toolchain(tmp_path, ENV) == (None, "the recorded facts are from another release")


def _log(*entries: tuple[str, int]) -> dict[str, LogEntry]:
    return {out: LogEntry(0, 1, mtime, out, "h") for out, mtime in entries}


def test_install_record_holds_until_ninja_builds_or_a_file_changes(tmp_path: Path):
    so = tmp_path / "pkg" / "_C.abi3.so"
    so.parent.mkdir()
    so.write_bytes(b"elf")
    log = _log(("_C.abi3.so", 5), ("CMakeFiles/_C.dir/a.cu.o", 4))
    state: dict = {}
    build_state.record_install(state, tmp_path, (so,), log)
    assert build_state.install_current(state, tmp_path, log) == (so,)
    # a plain `cmake --build --target install` logs its install.util edge: nothing installable was built
    assert build_state.install_current(state, tmp_path, {**log, **_log(("CMakeFiles/install.util", 9))}) == (so,)
    assert build_state.install_current(state, tmp_path, {**log, **_log(("_C.abi3.so", 6))}) is None
    assert build_state.install_current(state, tmp_path / "elsewhere", log) is None
    so.write_bytes(b"replaced by hand")
    assert build_state.install_current(state, tmp_path, log) is None
    so.unlink()
    assert build_state.install_current(state, tmp_path, log) is None


def test_presets_from_an_older_release_are_rewritten_once():
    facts = make_facts()
    fingerprint = build_state.facts_fingerprint(facts, ENV)
    assert fingerprint["plan_format"] == build_state.PLAN_FORMAT
    older = {k: v for k, v in fingerprint.items() if k != "plan_format"}
    assert build_state.presets_reason({"presets": {"fingerprint": older}}, fingerprint) == "toolchain changed"
    assert build_state.what_changed({"presets": {"fingerprint": older}}, fingerprint) == "plan_format"
    assert build_state.presets_reason({"presets": {"fingerprint": fingerprint}}, fingerprint) is None
