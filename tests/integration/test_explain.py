"""`python -m buildtools build --explain` with real ninja and ccache on the loop_project fixture:
each rebuilt TU with ninja's reason (its source, a header, its command, no previous output) and
ccache's result for it."""
from __future__ import annotations

import pytest

from _loop import build, copy_fixture, have_build_tools, loop_env, set_fx_value

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_build_tools(), reason="needs cmake, ninja and ccache"),
]

CU_O = "CMakeFiles/_fx.dir/csrc/value.cu.o"
CPP_O = "CMakeFiles/_fx.dir/csrc/fx.cpp.o"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    src = copy_fixture(tmp / "project")
    (src / "csrc" / "fx_extra.h").write_text("#pragma once\ninline int fx_extra() { return 1; }\n")
    fx = src / "csrc" / "fx.cpp"
    fx.write_text('#include "fx_extra.h"\n' + fx.read_text())
    env = loop_env(tmp / "ccache")
    rc, summary, err = build(src, env, "--explain")
    assert rc == 0, err
    return src, env, summary


def _why(summary: dict) -> dict[str, tuple[str, str | None]]:
    return {e["output"]: (e["reason"], e["cache"]) for e in summary["explain"]}


def test_first_build_has_no_previous_outputs(project):
    _, _, first = project
    none = "no previous output (no header list recorded for it)"  # a new build dir: ninja has no deps log yet
    assert _why(first) == {CU_O: (none, "miss"), CPP_O: (none, "miss")}
    assert {e["source"] for e in first["explain"]} == {"csrc/value.cu", "csrc/fx.cpp"}


def test_a_real_edit_and_a_touch_of_the_source(project):
    src, env, _ = project
    set_fx_value(src, 7)
    rc, summary, err = build(src, env, "--explain")
    assert rc == 0, err
    assert _why(summary) == {CU_O: ("the source changed", "miss")}
    assert "why: csrc/value.cu: the source changed; cache: miss" in err  # the text summary, one line per TU
    (src / "csrc" / "value.cu").touch()
    rc, summary, err = build(src, env, "--explain")
    assert _why(summary) == {CU_O: ("the source changed", "hit")}  # same bytes: served from the cache


def test_a_header_edit_names_the_header(project):
    src, env, _ = project
    (src / "csrc" / "fx_extra.h").write_text("#pragma once\ninline int fx_extra() { return 2; }\n")
    rc, summary, err = build(src, env, "--explain")
    assert rc == 0, err
    assert _why(summary) == {CPP_O: ("a header changed: csrc/fx_extra.h", "miss")}


def test_a_deleted_object_and_a_changed_flag(project):
    src, env, _ = project
    (src / "cmake-build-release" / CU_O).unlink()
    rc, summary, err = build(src, env, "--explain")
    assert rc == 0, err
    assert _why(summary) == {CU_O: ("no previous output", "hit")}
    cmakelists = src / "CMakeLists.txt"
    cmakelists.write_text(cmakelists.read_text() + "target_compile_definitions(_fx PRIVATE FX_FLAG=1)\n")
    rc, summary, err = build(src, env, "--explain")  # ninja re-runs CMake itself, then sees new commands
    assert rc == 0, err
    command = "its command changed (a flag, a define, the compiler)"
    assert {out: reason for out, (reason, _) in _why(summary).items()} == {CU_O: command, CPP_O: command}
    assert all(cache is not None for _, cache in _why(summary).values())


def test_without_explain_there_is_no_list(project):
    src, env, _ = project
    rc, summary, err = build(src, env)
    assert rc == 0 and "explain" not in summary
