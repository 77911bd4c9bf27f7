"""Presets rendering and merging (pure), checked against CMake's own presets schema."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildtools.cmake import presets
from buildtools.settings import Overrides
from buildtools.plan.planner import make_plan
from fake_facts import make_facts


def cmake_schema() -> dict:
    cmake = pytest.importorskip("cmake")
    found = sorted(Path(cmake.CMAKE_DATA).glob("share/cmake-*/Help/manual/presets/schema.json"))
    assert found, f"no presets schema under {cmake.CMAKE_DATA}"
    return json.loads(found[-1].read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    # CMake's schema names draft 2020-12 with a trailing "#", which jsonschema does not look up.
    return jsonschema.Draft202012Validator(cmake_schema())


def cuda_plan(**kwargs):
    return make_plan(make_facts(source_dir=Path("/src/kern loop"), **kwargs), Overrides.from_sources(arch="9.0"))


def by_name(doc, kind):
    return {p["name"]: p for p in doc[kind]}


# -- render ---------------------------------------------------------------------------------------
def test_rendered_document_shape():
    plan = cuda_plan(cores=8, ram_gib=64)
    doc = presets.render(plan)
    assert doc["version"] == 6
    configure = by_name(doc, "configurePresets")
    base = configure["kernloop-base"]
    assert base["hidden"] is True and base["generator"] == "Ninja"
    for name, build_type in (("release", "Release"), ("relwithdebinfo", "RelWithDebInfo"), ("debug", "Debug")):
        assert configure[name]["inherits"] == "kernloop-base"
        assert configure[name]["binaryDir"] == f"${{sourceDir}}/cmake-build-{name}"
        assert configure[name]["cacheVariables"] == {"CMAKE_BUILD_TYPE": build_type}
        build = by_name(doc, "buildPresets")[name]
        assert build["configurePreset"] == name and build["jobs"] == plan.jobs.value
        assert build["targets"] == ["install"]
        steps = by_name(doc, "workflowPresets")[name]["steps"]
        assert steps == [{"type": "configure", "name": name}, {"type": "build", "name": name}]
    cv = base["cacheVariables"]
    assert cv["CMAKE_INSTALL_PREFIX"] == "${sourceDir}"
    assert cv["CMAKE_JOB_POOL_COMPILE"] == "compile" and cv["CMAKE_JOB_POOL_LINK"] == "link"
    assert cv["CMAKE_JOB_POOLS"] == f"compile={plan.jobs.value};link={plan.link_jobs.value}"
    assert {k: v for k, v in cv.items() if k != "CMAKE_INSTALL_PREFIX"} == dict(plan.cache_variables)
    assert base["environment"] == {"CCACHE_BASEDIR": "${sourceDir}", "CCACHE_NOHASHDIR": "true",
                                   "CCACHE_IGNOREOPTIONS": "--threads=*", "CCACHE_PREFIX": plan.environment["CCACHE_PREFIX"]}
    assert base["environment"]["CCACHE_PREFIX"].endswith(" $penv{CCACHE_PREFIX}")  # the user's prefix runs too


def test_minsizerel_gets_its_own_preset_only_when_planned():
    plan = make_plan(make_facts(), Overrides.from_sources(arch="9.0", build_type="minsizerel"))
    assert presets.preset_names(plan) == ("release", "relwithdebinfo", "debug", "minsizerel")
    doc = presets.render(plan)
    assert by_name(doc, "configurePresets")["minsizerel"]["cacheVariables"] == {"CMAKE_BUILD_TYPE": "MinSizeRel"}
    assert presets.preset_names(cuda_plan()) == ("release", "relwithdebinfo", "debug")


def test_cpu_plan_renders_no_cuda_variables():
    doc = presets.render(make_plan(make_facts(nvcc=False)))
    cv = by_name(doc, "configurePresets")["kernloop-base"]["cacheVariables"]
    assert cv["KERNLOOP_ENABLE_CUDA"] == "OFF"
    assert not [k for k in cv if "CUDA" in k and k != "KERNLOOP_ENABLE_CUDA"]
    assert "TORCH_CUDA_ARCH_LIST" not in cv and "NVCC_THREADS" not in cv


def test_no_launcher_means_no_environment():
    doc = presets.render(cuda_plan(ccache=None, sccache=None))
    assert "environment" not in by_name(doc, "configurePresets")["kernloop-base"]


@pytest.mark.parametrize("kwargs", [{}, {"nvcc": False}, {"ccache": None, "sccache": "0.16.0"}, {"ninja": False}])
def test_rendered_document_validates_against_cmakes_schema(validator, kwargs):
    validator.validate(presets.render(make_plan(make_facts(**kwargs), Overrides.from_sources(arch="9.0"))))


def test_schema_check_can_fail(validator):
    doc = presets.render(cuda_plan())
    doc["buildPresets"][0]["jobs"] = "many"
    assert not validator.is_valid(doc)


# -- merge ----------------------------------------------------------------------------------------
USER_FILE = {
    "version": 4,
    "vendor": {"example.com/ide": {"x": 1}},
    "include": ["more.json"],
    "configurePresets": [
        {"name": "mine", "inherits": "kernloop-base", "binaryDir": "${sourceDir}/b-mine"},
        {"name": "release", "generator": "Unix Makefiles", "binaryDir": "${sourceDir}/old"},
    ],
    "buildPresets": [{"name": "mine", "configurePreset": "mine"}],
    "testPresets": [{"name": "t", "configurePreset": "mine"}],
}


def test_merge_replaces_ours_by_name_and_keeps_everything_else():
    ours = presets.render(cuda_plan())
    original = copy.deepcopy(USER_FILE)
    result = presets.merge(USER_FILE, ours)
    doc = result.document
    assert USER_FILE == original  # input untouched
    assert doc["vendor"] == USER_FILE["vendor"] and doc["include"] == USER_FILE["include"]
    assert doc["version"] == 6  # raised to what our presets need
    names = [p["name"] for p in doc["configurePresets"]]
    assert names[:2] == ["mine", "release"]  # user's order kept, ours replaced in place
    assert set(names) == {"mine", "release", "kernloop-base", "relwithdebinfo", "debug"}
    assert by_name(doc, "configurePresets")["release"] == by_name(ours, "configurePresets")["release"]
    assert by_name(doc, "configurePresets")["mine"] == USER_FILE["configurePresets"][0]
    assert by_name(doc, "buildPresets")["mine"] == USER_FILE["buildPresets"][0]
    assert doc["testPresets"] == USER_FILE["testPresets"]
    assert result.replaced == ("configurePresets/release",)
    assert result.kept == ("mine", "t")
    assert presets.conflicts(USER_FILE, ours) == ("release",)


def test_merge_keeps_a_newer_version():
    doc = presets.merge({"version": 10, "configurePresets": []}, presets.render(cuda_plan())).document
    assert doc["version"] == 10


def test_merge_into_nothing_is_ours():
    ours = presets.render(cuda_plan())
    result = presets.merge(None, ours)
    assert result.document == ours and result.replaced == () and result.kept == ()


preset_name = st.sampled_from(["release", "debug", "kernloop-base", "mine", "ci", "relwithdebinfo", "x"])
user_doc_st = st.fixed_dictionaries(
    {"version": st.integers(3, 10)},
    optional={
        kind: st.lists(st.builds(lambda n, v: {"name": n, "description": v}, preset_name, st.text(max_size=5)),
                       unique_by=lambda p: p["name"], max_size=5)
        for kind in ("configurePresets", "buildPresets", "workflowPresets", "testPresets")
    },
)


@settings(max_examples=200, deadline=None)
@given(user=user_doc_st)
def test_merge_properties(user):
    ours = presets.render(cuda_plan())
    result = presets.merge(user, ours)
    doc = result.document
    mine = presets.our_names(ours)
    for kind in presets.PRESET_KINDS:
        merged = by_name(doc, kind) if kind in doc else {}
        for p in user.get(kind, []):  # every user preset not named like ours survives unchanged
            if p["name"] not in mine.get(kind, set()):
                assert merged[p["name"]] == p
        for p in ours.get(kind, []):  # every one of ours is present, exactly as rendered
            assert merged[p["name"]] == p
        assert len(merged) == len(doc.get(kind, []))  # no duplicates
    assert presets.merge(doc, ours).document == doc  # idempotent
    assert doc["version"] >= 6


# -- parse ----------------------------------------------------------------------------------------
def test_parse_reports_the_line_of_invalid_json():
    text = '{\n  "version": 6,\n  "configurePresets": [\n    {"name": "a",}\n  ]\n}\n'
    with pytest.raises(presets.InvalidPresets) as err:
        presets.parse(text)
    assert err.value.line == 4 and "line 4" in err.value.message


@pytest.mark.parametrize("text, what", [("[]", "not a JSON object"), ('{"configurePresets": {}}', "not a list"),
                                        ('{"buildPresets": [{"jobs": 2}]}', "has no name")])
def test_parse_rejects_documents_we_cannot_merge_into(text, what):
    with pytest.raises(presets.InvalidPresets) as err:
        presets.parse(text)
    assert what in err.value.message


def test_dumps_round_trips():
    doc = presets.render(cuda_plan())
    assert presets.parse(presets.dumps(doc)) == doc
