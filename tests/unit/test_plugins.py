"""Platform plugins: discovery through entry points, the built-ins on the same loader, priority,
facts contributed into Facts.extra, and containment (a plugin that raises is disabled by name)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from _plugin_fakes import forget_modules, platform_source, write_plugin
from buildtools.settings import BuildConfig
from buildtools.errors import KernloopError
from buildtools.plan.platforms.cpu import CpuPlatform
from buildtools.plan.platforms.cuda import CudaPlatform
from buildtools.settings import Overrides
from buildtools.plugins.guard import GuardedPlatform
from buildtools.plugins.loader import PluginSession
from buildtools.plugins.spec import BUILTINS, DISABLE_ENV, discover, load_platform
from fake_facts import make_facts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path for plugin distributions of this test."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    forget_modules()


def make(facts, env=None, overrides=None):
    """The session's steps, as ``buildtools.session.plan_with_report`` runs them, on fake facts."""
    with PluginSession(env or {}) as plugins:
        plugins.apply("before-detection")
        facts = plugins.contribute(facts)
        plan = plugins.plan(facts, overrides or Overrides(), BuildConfig())
        facts, plan = plugins.finish(facts, plan)
        return facts, plan, plugins.report()


def disabled_warning(plan, name):
    found = [w for w in plan.warnings if f"'{name}'" in w and "disabled" in w]
    assert len(found) == 1, plan.warnings
    assert "\n" not in found[0]
    return found[0]


# -- built-ins and discovery -------------------------------------------------------------------------
def test_builtins_are_entry_points_loaded_by_the_same_loader():
    assert [s.name for s in BUILTINS] == ["cuda", "cpu"] and all(s.builtin for s in BUILTINS)
    assert isinstance(load_platform(BUILTINS[0]), CudaPlatform)
    assert isinstance(load_platform(BUILTINS[1]), CpuPlatform)
    with PluginSession({}, specs=BUILTINS) as plugins:
        platforms = plugins.platforms()
    assert [p.name for p in platforms] == ["cuda", "cpu"]
    assert all(isinstance(p, GuardedPlatform) for p in platforms)


def test_builtins_plan_as_before_through_the_session():
    _, plan, report = make(make_facts())
    assert plan.platform.value == "cuda" and plan.platform.reason == "CUDA plan"
    assert [(p.name, p.state) for p in report.platforms] == [("cuda", "selected"), ("cpu", "enabled")]
    _, plan, _ = make(make_facts(nvcc=False))
    assert plan.platform.value == "cpu" and plan.platform.reason.startswith("CPU-only plan: nvcc not found")


def test_without_plugins_discovery_does_not_import_importlib_metadata():
    # importlib.metadata costs 30-60 ms to import here; the generator must not pay it for nothing.
    code = ("import sys; from buildtools.plugins.spec import discover; specs = discover(); "
            "print(len(specs), 'importlib.metadata' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(BUILTINS)), "False"]


def test_entry_point_is_discovered_with_its_distribution(site):
    plugin = write_plugin(site, "tpu")
    specs = discover()
    assert specs[: len(BUILTINS)] == BUILTINS
    spec = next(s for s in specs if s.name == "tpu")
    assert spec.value == f"{plugin.package}:Plat" and spec.dist == plugin.dist and not spec.builtin
    assert spec.label == f"platform plugin 'tpu' ({plugin.dist})"


# -- a working plugin ----------------------------------------------------------------------------------
def test_plugin_contributes_facts_cache_variables_and_launcher_languages(site):
    write_plugin(site, "tpu")
    facts, plan, report = make(make_facts())
    assert facts.extra["tpu"] == {"found": True}
    assert "tpu: tool found" in facts.notes
    assert plan.platform.value == "tpu"  # priority 200: ahead of CUDA
    assert plan.cache_variables["TEST_PLATFORM"] == "ON"
    assert plan.cache_variables["CMAKE_TEST_COMPILER_LAUNCHER"] == "/opt/tools/bin/ccache"
    assert plan.archs.value == ("x1",)
    assert [(p.name, p.state) for p in report.platforms][:2] == [("tpu", "selected"), ("cuda", "enabled")]


def test_priority_orders_the_platforms(site):
    write_plugin(site, "low", platform_source("low", priority=10))
    write_plugin(site, "mid", platform_source("mid", priority=60))
    with PluginSession({}) as plugins:
        assert [p.name for p in plugins.platforms()] == ["cuda", "mid", "low", "cpu"]
    _, plan, _ = make(make_facts())
    assert plan.platform.value == "cuda"
    _, plan, _ = make(make_facts(nvcc=False))
    assert plan.platform.value == "mid"
    assert plan.platform.reason == "MID plan (not cuda: nvcc not found (pass --nvcc PATH for a CUDA build))"


def test_plugin_that_does_not_apply_says_why_in_the_plan_reason(site):
    write_plugin(site, "tpu", platform_source("tpu", unavailable="return 'no tpu compiler'"))
    _, plan, _ = make(make_facts(nvcc=False))
    assert plan.platform.value == "cpu"
    assert "no tpu compiler" in plan.platform.reason


def test_user_errors_from_a_plugin_are_not_swallowed(site):
    write_plugin(site, "tpu", platform_source(
        "tpu", plan_device="raise KernloopError('--arch: bad tpu arch', 'use t1')"))
    with pytest.raises(KernloopError) as err:
        make(make_facts())
    assert err.value.one_line() == "error: --arch: bad tpu arch -- use t1"


def test_disable_env_leaves_a_platform_out_without_a_warning(site):
    write_plugin(site, "tpu")
    _, plan, report = make(make_facts(), env={DISABLE_ENV: "tpu"})
    assert plan.platform.value == "cuda"
    assert not any("tpu" in w for w in plan.warnings)
    assert ("tpu", "disabled") in [(p.name, p.state) for p in report.platforms]


# -- containment ---------------------------------------------------------------------------------------
def test_plugin_raising_at_import_is_disabled_by_name_and_the_plan_goes_on(site):
    write_plugin(site, "boom", "raise RuntimeError('cannot find libfoo.so')\n")
    facts, plan, report = make(make_facts())
    assert plan.platform.value == "cuda"
    message = disabled_warning(plan, "boom")
    assert message.startswith("platform plugin 'boom' (")
    assert "failed in loading: RuntimeError: cannot find libfoo.so" in message
    assert ("boom", "disabled") in [(p.name, p.state) for p in report.platforms]


def test_plugin_calling_sys_exit_at_import_is_disabled(site):
    write_plugin(site, "quits", "import sys\nsys.exit(3)\n")
    _, plan, _ = make(make_facts())
    assert "failed in loading: SystemExit: 3" in disabled_warning(plan, "quits")


@pytest.mark.parametrize("hook", ["detect", "unavailable", "plan_device", "job_ram", "launcher_languages",
                                  "cache_variables"])
def test_plugin_raising_in_a_hook_is_disabled_by_name_and_the_plan_goes_on(site, hook):
    write_plugin(site, "flaky", platform_source("flaky", **{hook: "return 1 / 0"}))
    facts, plan, report = make(make_facts())
    assert plan.platform.value == "cuda"
    assert "TEST_PLATFORM" not in plan.cache_variables
    assert "flaky" not in facts.extra  # its contribution goes with it
    message = disabled_warning(plan, "flaky")
    assert f"failed in {hook}: ZeroDivisionError: division by zero" in message
    assert dict((p.name, p.state) for p in report.platforms)["flaky"] == "disabled"


@pytest.mark.parametrize("hook, result", [
    ("detect", "{'not': 'Detected'}"),
    ("unavailable", "False"),
    ("plan_device", "None"),
    ("job_ram", "(-1, 'x')"),
    ("launcher_languages", "['CUDA']"),
    ("cache_variables", "{'N': 1}"),
])
def test_plugin_returning_the_wrong_type_is_disabled(site, hook, result):
    write_plugin(site, "odd", platform_source("odd", **{hook: f"return {result}"}))
    _, plan, _ = make(make_facts())
    assert plan.platform.value == "cuda"
    assert f"failed in {hook}: returned" in disabled_warning(plan, "odd")


def test_entry_point_that_is_not_a_platform_is_disabled(site):
    write_plugin(site, "notone", "def Plat():\n    return 42\n")
    _, plan, _ = make(make_facts())
    assert "not a buildtools Platform" in disabled_warning(plan, "notone")


def test_platform_whose_name_differs_from_its_entry_point_is_disabled(site):
    write_plugin(site, "alias", platform_source("other"))
    _, plan, _ = make(make_facts())
    assert "calls itself 'other'" in disabled_warning(plan, "alias")


def test_plugin_cannot_take_a_builtin_name(site):
    write_plugin(site, "cuda", platform_source("cuda"))
    _, plan, report = make(make_facts())
    assert plan.platform.value == "cuda" and "TEST_PLATFORM" not in plan.cache_variables
    clash = [w for w in plan.warnings if "taken by built-in platform 'cuda'" in w]
    assert len(clash) == 1 and clash[0].startswith("platform plugin 'cuda' (klfake-cuda-")


def test_when_every_platform_is_gone_the_error_is_one_line(site):
    with pytest.raises(KernloopError) as err:
        make(make_facts(nvcc=False), env={DISABLE_ENV: "cuda,cpu"})
    assert err.value.one_line() == ("error: no build platform can build here -- unset KERNLOOP_DISABLE_PLUGINS, "
                                    "or see the warnings above for a disabled platform")
