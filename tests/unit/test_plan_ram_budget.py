"""KERNLOOP_RAM_BUDGET / ram_budget: a RAM budget that replaces the detected available RAM in the plan."""
from __future__ import annotations

import pytest

from buildtools.settings import OVERRIDE_ENV_VARS as OVERRIDE_VARS
from buildtools.errors import KernloopError
from buildtools.model import GIB
from buildtools.settings import Overrides
from buildtools.plan.planner import make_plan
from fake_facts import make_facts


@pytest.mark.parametrize("text, want", [("2", 2 * GIB), ("1.5G", int(1.5 * GIB)), ("1536M", int(1.5 * GIB)),
                                        ("3 GiB", 3 * GIB), ("512mb", 512 * 1024**2)])
def test_sizes_are_parsed(text, want):
    assert Overrides.from_sources(env={"KERNLOOP_RAM_BUDGET": text}).ram_budget.value == want


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "2T", "0.5M"])
def test_bad_size_is_one_line_naming_the_variable(text):
    with pytest.raises(KernloopError) as err:
        Overrides.from_sources(env={"KERNLOOP_RAM_BUDGET": text})
    assert "KERNLOOP_RAM_BUDGET" in err.value.one_line()


def test_flag_beats_env_and_empty_is_unset():
    o = Overrides.from_sources(ram_budget="3G", env={"KERNLOOP_RAM_BUDGET": "1G"})
    assert (o.ram_budget.value, o.ram_budget.source) == (3 * GIB, "--ram-budget")
    assert Overrides.from_sources(env={"KERNLOOP_RAM_BUDGET": " "}) == Overrides()


def test_lower_budget_lowers_jobs_and_is_named_in_the_reason():
    facts = make_facts(cores=16, ram_gib=64)
    free = make_plan(facts, Overrides.from_sources(arch="9.0"))
    tight = make_plan(facts, Overrides.from_sources(arch="9.0", env={"KERNLOOP_RAM_BUDGET": "2G"}))
    per_job = tight.ram_per_job_gib.value
    assert tight.jobs.value < free.jobs.value
    assert tight.jobs.value * per_job <= 2  # the planner's invariant, against the budget
    assert tight.jobs.value == max(1, int(2 // per_job))
    assert "KERNLOOP_RAM_BUDGET" in tight.jobs.reason
    assert tight.cache_variables["CMAKE_JOB_POOLS"].startswith(f"compile={tight.jobs.value};")


def test_budget_above_available_ram_is_used_with_a_warning():
    plan = make_plan(make_facts(cores=16, ram_gib=2), Overrides.from_sources(arch="9.0", ram_budget="64G"))
    assert plan.jobs.value > 2
    assert any("exceeds the available" in w for w in plan.warnings)


def test_budget_below_one_job_plans_one_job_and_says_so():
    plan = make_plan(make_facts(cores=16, ram_gib=64), Overrides.from_sources(env={"KERNLOOP_RAM_BUDGET": "100M"}))
    assert plan.jobs.value == 1
    assert any("RAM budget (KERNLOOP_RAM_BUDGET)" in w and "below" in w for w in plan.warnings)


def test_a_changed_budget_regenerates_the_presets():
    assert "KERNLOOP_RAM_BUDGET" in OVERRIDE_VARS
