"""The reliability rules at unit level: user files kept, BOMs read and kept, secrets masked, the
fingerprint complete, the CUDA switch honoured."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools.cmake import presets
from buildtools.errors import KernloopError
from buildtools.plan.planner import make_plan
from buildtools.run import state as build_state
from buildtools.settings import Overrides
from buildtools.util import fileio
from buildtools.util.lock import BuildLock, read_holder
from buildtools.util.secrets import redact
from fake_facts import make_facts, program

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "tools" / "generate_presets.py"


def test_backup_pruning_never_touches_a_users_own_backup(tmp_path):
    path = tmp_path / "CMakeUserPresets.json"
    path.write_text("{}")
    mine = [tmp_path / "CMakeUserPresets.json.bak-1", tmp_path / "CMakeUserPresets.json.bak-before-upgrade"]
    for p in mine:
        p.write_text("my work")
    for _ in range(fileio.BACKUPS_KEPT + 3):
        fileio.backup(path)
    ours = [p for p in tmp_path.iterdir() if p.name.startswith("CMakeUserPresets.json.bak-2")]
    assert len(ours) == fileio.BACKUPS_KEPT
    assert all(p.read_text() == "my work" for p in mine)


def test_a_bom_is_read_as_cmake_reads_it_and_kept():
    text = presets.BOM + json.dumps({"version": 6, "configurePresets": [{"name": "mine", "binaryDir": "b"}]})
    doc = presets.parse(text)
    assert doc["configurePresets"][0]["name"] == "mine"
    assert presets.dumps(doc, bom=presets.has_bom(text)).startswith(presets.BOM)
    assert not presets.dumps(doc).startswith(presets.BOM)


def test_the_presets_command_keeps_a_boms_file_and_the_users_presets(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    user = {"version": 6, "configurePresets": [{"name": "mine", "generator": "Ninja", "binaryDir": "${sourceDir}/mine"}]}
    path = project / "CMakeUserPresets.json"
    path.write_text(presets.BOM + json.dumps(user), encoding="utf-8")
    p = subprocess.run([sys.executable, str(SHIM), "--source-dir", str(project), "--force-overwrite", "--arch", "9.0"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 0, p.stderr
    text = path.read_text(encoding="utf-8")
    assert text.startswith(presets.BOM)
    names = [c["name"] for c in json.loads(text.removeprefix(presets.BOM))["configurePresets"]]
    assert "mine" in names and "release" in names


def test_redact_masks_every_url_password_and_nothing_else():
    assert redact("build --remote-cache=redis://u:pw@h:1/0 x") == "build --remote-cache=redis://u:***@h:1/0 x"
    assert redact("https://:tok@dav/x and http://h/p") == "https://:***@dav/x and http://h/p"
    assert redact("/src/a:b@c and user@host") == "/src/a:b@c and user@host"


def test_the_lock_never_shows_a_password_to_other_users(tmp_path):
    saved, sys.argv = sys.argv, ["x", "--remote-cache", "redis://ci:s3cret@cache"]
    try:
        with BuildLock(tmp_path):
            holder = read_holder(tmp_path)
    finally:
        sys.argv = saved
    assert holder is not None and "s3cret" not in holder.command and "redis://ci:***@cache" in holder.command


def test_the_fingerprint_holds_ninja_and_settings_and_no_password(tmp_path):
    facts = make_facts(source_dir=tmp_path)
    base = build_state.facts_fingerprint(facts, {})
    moved = dataclasses.replace(facts, ninja=program("ninja", "1.12.1", "/elsewhere"))
    assert build_state.facts_fingerprint(moved, {}) != base  # a vanished venv ninja rewrites the presets
    assert build_state.facts_fingerprint(dataclasses.replace(facts, ninja=None), {}) != base
    (tmp_path / "pyproject.toml").write_text("[tool.buildtools]\nmax-nvcc-threads = 1\n")
    assert build_state.facts_fingerprint(facts, {}) != base
    fp = build_state.facts_fingerprint(facts, {"KERNLOOP_REMOTE_CACHE": "redis://u:s3cret@h"})
    assert "s3cret" not in json.dumps(fp)


def test_old_flat_state_is_read_and_a_missing_presets_record_rewrites_them(tmp_path):
    (tmp_path / build_state.STATE_NAME).write_text(json.dumps({"fingerprint": {"a": 1}, "preset": "d"}))
    state = build_state.read_state(tmp_path)
    assert state["configured"]["preset"] == "d" and build_state.presets_reason(state, {"a": 1}) is None
    assert build_state.presets_reason({}, {"a": 1}) == "first build in this dir"
    assert build_state.presets_reason(state, {"a": 2}) == "toolchain changed"
    assert build_state.what_changed(state, {"a": 2}) == "a" and build_state.what_changed({}, {"a": 2}) == ""


def test_state_is_never_written_through_a_planted_symlink(tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep me")
    build_dir = tmp_path / "b"
    build_dir.mkdir()
    (build_dir / build_state.STATE_NAME).symlink_to(target)
    build_state.write_state(build_dir, {"presets": {}})
    assert target.read_text() == "keep me" and not (build_dir / build_state.STATE_NAME).is_symlink()


def test_enable_cuda_off_plans_cpu_and_on_requires_cuda():
    off = make_plan(make_facts(), Overrides.from_sources(env={"KERNLOOP_ENABLE_CUDA": "OFF"}))
    assert off.platform.value == "cpu" and off.platform.overridden_by == "KERNLOOP_ENABLE_CUDA"
    assert off.cache_variables["KERNLOOP_ENABLE_CUDA"] == "OFF"
    with pytest.raises(KernloopError, match="KERNLOOP_ENABLE_CUDA=ON but CUDA cannot build here"):
        make_plan(make_facts(nvcc=False), Overrides.from_sources(env={"KERNLOOP_ENABLE_CUDA": "ON"}))
    with pytest.raises(KernloopError, match="not ON or OFF"):
        Overrides.from_sources(env={"KERNLOOP_ENABLE_CUDA": "maybe"})


# -- no traceback for any value: fuzzed settings and presets -------------------------------------
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st  # noqa: E402

from buildtools.settings import config_from_table, load_config  # noqa: E402

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=12)
_KEYS = ["ram-per-cxx-job-gib", "max-nvcc-threads", "default-cuda-archs", "launcher", "cache-dir", "remote-cache",
         "cuda-variant-packages", "unknown-key"]


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(_KEYS), _json, max_size=4))
def test_any_tool_buildtools_table_is_a_config_or_one_error(table):
    try:
        config_from_table(table, "pyproject.toml")
    except KernloopError as exc:
        assert "\n" not in exc.one_line()


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64))
def test_any_pyproject_bytes_are_a_config_or_one_error(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("p")
    (d / "pyproject.toml").write_bytes(b"[tool.buildtools]\n" + data)
    try:
        load_config(d)
    except KernloopError:
        pass
    (d / "pyproject.toml").write_bytes(b"tool = 3\n")
    with pytest.raises(KernloopError, match=r"\[tool\] must be a table"):
        load_config(d)


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.sampled_from(["name", "inherits", "binaryDir", "cacheVariables", "environment",
                                                  "generator"]), _json | st.just("release"), max_size=5), max_size=4))
def test_any_presets_structure_resolves_or_is_one_error(tmp_path_factory, configure):
    d = tmp_path_factory.mktemp("r")
    (d / "CMakeUserPresets.json").write_text(json.dumps({"version": 6, "configurePresets": configure}))
    try:
        presets.resolve_preset(d, "release")
    except KernloopError as exc:
        assert "\n" not in exc.one_line()
