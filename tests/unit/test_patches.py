"""Plugin patches: the registry check (each kind of drift), the version gate and its override,
application at the defined points, containment (every patch undone), and failures."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

import buildtools.plan.planner
import buildtools.cmake.presets
from _plugin_fakes import entry, forget_modules, platform_source, registry_source, write_plugin
from buildtools.cli.main import main
from buildtools.settings import BuildConfig
from buildtools.detect import DetectOptions
from buildtools.errors import KernloopError
from buildtools.model import CpuFacts
from buildtools.plugins.patches import VERSION_ENV, BuildtoolsVersion, Patcher, check, gate
from buildtools.plugins.registry import PatchPackage, find_patch_package, read_registry
from buildtools.settings import Overrides
from buildtools.plan.platforms.base import Platform
from buildtools.plan.platforms.cpu import CpuPlatform
from buildtools.plan.platforms.cuda import CudaPlatform
from buildtools.model import Override
from buildtools.plugins.loader import PluginSession
from buildtools.plugins.spec import discover
from buildtools.session import PlanOptions, plan_with_report
from fake_facts import make_facts

REPO = Path(__file__).resolve().parents[2]
FIXTURE_PATCH = REPO / "tests" / "fixtures" / "rocm_plugin" / "kernloop_rocm" / "patch"
ORIGINAL_CHOOSE_LAUNCHER = buildtools.plan.planner.choose_launcher

# Adds PATCHED_BY to the launcher's environment: visible in plan.environment.
ADD_ENV = """
import functools
from dataclasses import replace

def wrap(original):
    @functools.wraps(original)
    def patched(facts, config, platform, *args, **kwargs):
        decision, warnings = original(facts, config, platform, *args, **kwargs)
        env = dict(decision.value.environment, PATCHED_BY=platform.name)
        return replace(decision, value=replace(decision.value, environment=env)), warnings
    return patched
"""
RAISES_WHEN_CALLED = """
def wrap(original):
    def patched(*args, **kwargs):
        return 1 / 0
    return patched
"""
RAISES_IN_WRAP = """
def wrap(original):
    raise RuntimeError("no hook to wrap")
"""
PASS_THROUGH = """
def wrap(original):
    def patched(*args, **kwargs):
        return original(*args, **kwargs)
    return patched
"""
FEWER_CORES = """
from buildtools.model import CpuFacts

def wrap(original):
    def detect_cpus(*args, **kwargs):
        return CpuFacts(usable=3, source="patched")
    return detect_cpus
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    forget_modules()
    assert buildtools.plan.planner.choose_launcher is ORIGINAL_CHOOSE_LAUNCHER  # nothing leaks out of a test


def make(facts, env=None, overrides=None):
    with PluginSession(env or {}) as plugins:
        plugins.apply("before-detection")
        facts = plugins.contribute(facts)
        plan = plugins.plan(facts, overrides or Overrides(), BuildConfig())
        facts, plan = plugins.finish(facts, plan)
        return facts, plan, plugins.report()


def statuses(report):
    return {s.name: (s.state, s.reason) for s in report.patches}


# -- the registry check --------------------------------------------------------------------------------
@pytest.fixture
def patch_dir(tmp_path):
    """A copy of the example plugin's patch package, to drift."""
    d = tmp_path / "kernloop_rocm" / "patch"
    shutil.copytree(FIXTURE_PATCH, d)
    return d


def edit_registry(d: Path, change) -> None:
    init = d / "__init__.py"
    tree = ast.parse(init.read_text())
    registry = next(ast.literal_eval(n.value) for n in tree.body
                    if isinstance(n, ast.Assign) and n.targets[0].id == "REGISTRY")
    change(registry)
    init.write_text(registry_source(registry))


def package(d: Path) -> PatchPackage:
    return PatchPackage("rocm", "kernloop_rocm.patch", d)


def test_the_example_plugins_registry_is_complete(patch_dir, capsys):
    registry = read_registry(package(patch_dir))
    assert registry.problems == () and registry.unusable == {}
    [e] = registry.entries
    assert (e.module, e.target, e.point, e.buildtools) == (
        "ccache_extrafiles", "buildtools.plan.planner.choose_launcher", "before-planning", ">=0.1,<0.2")
    assert all(len(getattr(e, f)) > 40 for f in ("why", "how", "upstream", "removal"))
    assert check(package(patch_dir), {}) == []
    assert main(["patches", "check", str(patch_dir)]) == 0
    assert "1 patch(es) in 1 package(s), all documented" in capsys.readouterr().out


DRIFT = {
    "module without entry": (
        lambda d: (d / "extra_fix.py").write_text("def wrap(original):\n    return original\n"),
        "kernloop_rocm.patch: patch module extra_fix.py has no entry in REGISTRY"),
    "entry without module": (
        lambda d: (d / "ccache_extrafiles.py").unlink(),
        "kernloop_rocm.patch: REGISTRY entry 'ccache_extrafiles' has no module (ccache_extrafiles.py)"),
    "missing field": (
        lambda d: edit_registry(d, lambda r: r["ccache_extrafiles"].pop("removal")),
        "kernloop_rocm.patch: REGISTRY['ccache_extrafiles']: field 'removal' is missing"),
    "empty field": (
        lambda d: edit_registry(d, lambda r: r["ccache_extrafiles"].update(how="  ")),
        "kernloop_rocm.patch: REGISTRY['ccache_extrafiles']: field 'how' is empty"),
    "empty upstream": (
        lambda d: edit_registry(d, lambda r: r["ccache_extrafiles"].update(upstream="")),
        "kernloop_rocm.patch: REGISTRY['ccache_extrafiles']: field 'upstream' is empty"),
}


@pytest.mark.parametrize("kind", list(DRIFT))
def test_patches_check_fails_on_each_kind_of_drift(patch_dir, capsys, kind):
    drift, problem = DRIFT[kind]
    drift(patch_dir)
    assert main(["patches", "check", str(patch_dir)]) == 1
    out = capsys.readouterr().out
    assert f"problem: {problem}\n" in out
    assert "problem(s) in 1 patch package(s)" in out


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["ccache_extrafiles"].update(point="after-build"),
     "point 'after-build' is not one of before-detection, before-planning"),
    (lambda r: r["ccache_extrafiles"].update(buildtools="0.1 or later"), "is not a version specifier"),
    (lambda r: r["ccache_extrafiles"].update(target="scikit_build_core.builder.build"),
     "is not a hook point (allowed: buildtools.detect.detect_all, buildtools.detect.detect_cpus"),
    # Internal names are not plugin API, even inside buildtools: only documented hook points are.
    (lambda r: r["ccache_extrafiles"].update(target="buildtools.plan.planner._remote_cache"),
     "'buildtools.plan.planner._remote_cache' is not a hook point"),
    (lambda r: r["ccache_extrafiles"].update(future_plan="later"), "unknown field 'future_plan'"),
    (lambda r: r.update(ccache_extrafiles="see the docs"), "REGISTRY entry 'ccache_extrafiles' is not a dict"),
])
def test_malformed_entries_are_problems(patch_dir, change, problem):
    edit_registry(patch_dir, change)
    registry = read_registry(package(patch_dir))
    assert registry.entries == () and "ccache_extrafiles" in registry.unusable
    assert any(problem in p for p in registry.problems), registry.problems


@pytest.mark.parametrize("init, problem", [
    ("REGISTRY = dict(a={})\n", "REGISTRY in __init__.py is not a literal dict (no names, calls or f-strings)"),
    ('"""no registry here"""\n', "__init__.py defines no REGISTRY dict"),
    ("REGISTRY = [1]\n", "REGISTRY is not a dict"),
])
def test_a_registry_that_cannot_be_read_marks_every_module_unusable(patch_dir, init, problem):
    (patch_dir / "__init__.py").write_text(init)
    registry = read_registry(package(patch_dir))
    assert registry.problems == (f"kernloop_rocm.patch: {problem}",)
    assert list(registry.unusable) == ["ccache_extrafiles"]


def test_a_module_without_wrap_is_a_problem(patch_dir):
    (patch_dir / "ccache_extrafiles.py").write_text("def patch(original):\n    return original\n")
    assert "ccache_extrafiles.py defines no wrap(original) function" in read_registry(package(patch_dir)).problems[0]


def test_a_target_that_is_no_hook_point_is_a_problem_for_every_version(patch_dir):
    edit_registry(patch_dir, lambda r: r["ccache_extrafiles"].update(target="buildtools.plan.planner._gone"))
    [problem] = check(package(patch_dir), {})
    assert "target 'buildtools.plan.planner._gone' is not a hook point (allowed: buildtools.detect.detect_all" in problem
    assert check(package(patch_dir), {VERSION_ENV: "0.2.0"}) == [problem]  # internal names are never plugin API


def test_check_reads_the_registry_without_importing_the_plugin(site, capsys):
    plugin = write_plugin(site, "tpu", "raise RuntimeError('import me and fail')\n",
                          patches={"fix": PASS_THROUGH},
                          registry={"fix": entry("buildtools.plan.planner.choose_launcher")})
    assert main(["patches", "check"]) == 0
    assert f"ok: {plugin.package}.patch" in capsys.readouterr().out
    assert plugin.package not in sys.modules


def test_check_finds_drift_in_installed_plugins(site, capsys):
    write_plugin(site, "tpu", patches={"fix": PASS_THROUGH, "stray": PASS_THROUGH},
                 registry={"fix": entry("buildtools.plan.planner.choose_launcher")})
    assert main(["patches", "check"]) == 1
    assert "patch module stray.py has no entry in REGISTRY" in capsys.readouterr().out


def test_check_of_a_directory_that_is_not_a_package_is_a_one_line_error(tmp_path, capsys):
    assert main(["patches", "check", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} is not a patch package")


# -- the version gate ----------------------------------------------------------------------------------
def test_gate_with_and_without_the_override(patch_dir):
    [e] = read_registry(package(patch_dir)).entries
    assert gate(e, BuildtoolsVersion("0.1.0", "buildtools.__version__")) is None
    assert gate(e, BuildtoolsVersion("0.1.7", VERSION_ENV)) is None
    assert gate(e, BuildtoolsVersion("0.2.0", VERSION_ENV)) == (
        f"buildtools 0.2.0 (from {VERSION_ENV}) is outside >=0.1,<0.2")
    assert gate(e, BuildtoolsVersion("0.0.9", VERSION_ENV)) is not None


def test_version_gate_in_a_plan(site):
    write_plugin(site, "tpu", patches={"add_env": ADD_ENV},
                 registry={"add_env": entry("buildtools.plan.planner.choose_launcher", buildtools=">=0.1,<0.2")})
    _, plan, report = make(make_facts())
    assert plan.environment["PATCHED_BY"] == "tpu"
    assert statuses(report)["tpu:add_env"] == ("applied", "buildtools 0.1.0 in >=0.1,<0.2")
    assert report.version == BuildtoolsVersion("0.1.0", "buildtools.__version__")

    _, plan, report = make(make_facts(), env={VERSION_ENV: "0.2.0.dev3"})
    assert "PATCHED_BY" not in plan.environment
    assert statuses(report)["tpu:add_env"] == (
        "skipped", f"buildtools 0.2.0.dev3 (from {VERSION_ENV}) is outside >=0.1,<0.2")

    # A development copy past the gate that still needs the patch says it is older.
    _, plan, _ = make(make_facts(), env={VERSION_ENV: "0.1.99"})
    assert plan.environment["PATCHED_BY"] == "tpu"


def test_a_bad_version_override_is_a_one_line_error(site):
    write_plugin(site, "tpu", patches={"add_env": ADD_ENV},
                 registry={"add_env": entry("buildtools.plan.planner.choose_launcher")})
    with pytest.raises(KernloopError) as err:
        make(make_facts(), env={VERSION_ENV: "latest"})
    assert err.value.one_line() == (f"error: {VERSION_ENV}=latest: not a version -- set {VERSION_ENV} to a "
                                    f"version such as 0.1.0, or unset it")


# -- points and containment ----------------------------------------------------------------------------
def test_patch_is_in_force_only_inside_the_session(site):
    write_plugin(site, "tpu", patches={"add_env": ADD_ENV},
                 registry={"add_env": entry("buildtools.plan.planner.choose_launcher")})
    with PluginSession({}) as plugins:
        facts = plugins.contribute(make_facts())
        plugins.plan(facts, Overrides(), BuildConfig())
        assert buildtools.plan.planner.choose_launcher is not ORIGINAL_CHOOSE_LAUNCHER
        assert buildtools.plan.planner.choose_launcher.__wrapped__.__wrapped__ is ORIGINAL_CHOOSE_LAUNCHER
    assert buildtools.plan.planner.choose_launcher is ORIGINAL_CHOOSE_LAUNCHER


def test_patches_are_undone_when_planning_fails(site):
    write_plugin(site, "tpu", platform_source("tpu", plan_device="raise KernloopError('--arch: bad')"),
                 patches={"add_env": ADD_ENV}, registry={"add_env": entry("buildtools.plan.planner.choose_launcher")})
    with pytest.raises(KernloopError):
        make(make_facts())
    assert buildtools.plan.planner.choose_launcher is ORIGINAL_CHOOSE_LAUNCHER


def test_before_planning_patches_apply_only_for_the_platform_the_plan_uses(site):
    write_plugin(site, "tpu", platform_source("tpu", unavailable="return 'no tpu'"),
                 patches={"add_env": ADD_ENV}, registry={"add_env": entry("buildtools.plan.planner.choose_launcher")})
    facts, plan, report = make(make_facts())
    assert plan.platform.value == "cuda" and "PATCHED_BY" not in plan.environment
    assert statuses(report)["tpu:add_env"] == ("skipped", "the plan uses platform 'cuda'")
    assert any(n.startswith("patch tpu:add_env skipped: buildtools.plan.planner.choose_launcher") for n in facts.notes)


def test_before_detection_patch_changes_what_detection_finds(site, tmp_path):
    write_plugin(site, "tpu", platform_source("tpu", unavailable="return 'no tpu'"),
                 patches={"fewer_cores": FEWER_CORES},
                 registry={"fewer_cores": entry("buildtools.detect.detect_cpus", point="before-detection")})
    import buildtools.detect

    original = buildtools.detect.detect_cpus
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
           "HOME": os.environ.get("HOME", "/")}
    facts, plan, report = plan_with_report(PlanOptions(
        source_dir=tmp_path, detect=DetectOptions(source_dir=tmp_path, env=env, nvcc_fallbacks=()),
        overrides=Overrides(), interactive=False, require_torch=False))
    assert facts.cpus == CpuFacts(usable=3, source="patched")
    assert statuses(report)["tpu:fewer_cores"][0] == "applied"
    assert buildtools.detect.detect_cpus is original


def test_patching_an_inherited_method_is_undone_without_a_trace(site):
    plugin = write_plugin(site, "tpu", patches={"ram": PASS_THROUGH},
                          registry={"ram": entry("buildtools.plan.platforms.cpu.CpuPlatform.job_ram")})
    [e] = read_registry(find_patch_package(next(s for s in discover() if s.name == "tpu"))).entries
    patcher = Patcher()
    patcher.apply(e)
    assert "job_ram" in vars(CpuPlatform)
    assert CpuPlatform().job_ram(BuildConfig(), 1) is None  # the inherited default, through the patch
    patcher.undo_all()
    assert "job_ram" not in vars(CpuPlatform) and CpuPlatform.job_ram is Platform.job_ram
    assert plugin.package + ".patch.ram" in sys.modules


def test_exceptions_of_the_original_pass_through_a_patch_unchanged(site):
    write_plugin(site, "tpu", patches={"parse": PASS_THROUGH},
                 registry={"parse": entry("buildtools.plan.platforms.cuda.CudaPlatform.plan_device")})
    original = CudaPlatform.plan_device
    [e] = read_registry(find_patch_package(next(s for s in discover() if s.name == "tpu"))).entries
    patcher = Patcher()
    patcher.apply(e)
    try:
        with pytest.raises(KernloopError, match="not a CUDA arch"):  # the caller's contract, not a plugin failure
            CudaPlatform().plan_device(make_facts(), Overrides(archs=Override("sm_90", "--arch")), BuildConfig(), 2)
        with pytest.raises(AttributeError):  # nor is the original's own bug
            CudaPlatform().plan_device(None, Overrides(), BuildConfig(), 2)
    finally:
        patcher.undo_all()
    assert CudaPlatform.plan_device is original


# -- failing patches -----------------------------------------------------------------------------------
def test_a_patch_that_raises_when_called_disables_its_plugin(site):
    write_plugin(site, "tpu", patches={"broken": RAISES_WHEN_CALLED},
                 registry={"broken": entry("buildtools.plan.planner.choose_launcher")})
    _, plan, report = make(make_facts())
    assert plan.platform.value == "cuda"  # planned again without the plugin and its patch
    [warning] = [w for w in plan.warnings if "'tpu'" in w]
    assert "disabled: failed in patch broken: ZeroDivisionError: division by zero" in warning
    assert statuses(report)["tpu:broken"] == ("undone", "its plugin was disabled")


def test_a_patch_that_cannot_be_applied_disables_its_plugin(site):
    write_plugin(site, "tpu", patches={"broken": RAISES_IN_WRAP, "gone": PASS_THROUGH},
                 registry={"broken": entry("buildtools.plan.planner.choose_launcher"),
                           "gone": entry("buildtools.plan.planner.make_plan")})
    _, plan, report = make(make_facts())
    assert plan.platform.value == "cuda"
    assert statuses(report)["tpu:broken"] == ("failed", "RuntimeError: no hook to wrap")
    assert statuses(report)["tpu:gone"] == ("skipped", "its plugin is disabled")
    assert any("'tpu'" in w and "failed in applying patch broken" in w for w in plan.warnings)


def test_unregistered_patches_are_not_applied_and_the_plan_warns(site):
    write_plugin(site, "tpu", patches={"add_env": ADD_ENV}, registry={})
    _, plan, report = make(make_facts())
    assert plan.platform.value == "tpu" and "PATCHED_BY" not in plan.environment
    assert statuses(report)["tpu:add_env"] == ("skipped", "no entry in REGISTRY")
    assert any("does not match its modules" in w and "patches check" in w for w in plan.warnings)


# -- patches list ----------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch for a plan")
def test_patches_list_shows_applied_and_skipped_with_why(site, tmp_path, capsys, monkeypatch):
    write_plugin(site, "tpu", patches={"add_env": ADD_ENV, "old": PASS_THROUGH},
                 registry={"add_env": entry("buildtools.plan.planner.choose_launcher"),
                           "old": entry("buildtools.plan.planner.choose_launcher", buildtools="<0.1")})
    monkeypatch.delenv(VERSION_ENV, raising=False)
    assert main(["patches", "list", "--source-dir", str(tmp_path), "-v"]) == 0
    out = capsys.readouterr().out
    assert "platforms: tpu (klfake-tpu-" in out and "[selected]" in out
    assert "tpu:add_env: applied -- buildtools 0.1.0 in >=0.1\n" in out
    assert "tpu:old: skipped -- buildtools 0.1.0 (from buildtools.__version__) is outside <0.1\n" in out
    assert "    Future plan for removal: when the test goes\n" in out
    assert main(["patches", "list", "--source-dir", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plan_platform"] == "tpu"
    assert {p["module"]: p["state"] for p in data["report"]["patches"]} == {"add_env": "applied", "old": "skipped"}
