"""Planner invariants over arbitrary machines, toolchains, settings and overrides (hypothesis)."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from buildtools.settings import BuildConfig
from buildtools.errors import KernloopError
from buildtools.model import GIB
from buildtools.settings import Overrides
from buildtools.plan.planner import make_plan
from buildtools.plan.platforms.base import Override
from buildtools.plan.platforms.cuda import arch_key
from fake_facts import NVCC13_ARCHS, make_facts

ALL_ARCHS = ("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "10.3", "11.0", "12.0", "12.1")

archs_subset = st.lists(st.sampled_from(ALL_ARCHS), unique=True, max_size=6).map(tuple)

facts_st = st.builds(
    make_facts,
    nvcc=st.booleans(),
    nvcc_archs=st.one_of(st.just(NVCC13_ARCHS), archs_subset.filter(bool)),
    torch_cuda=st.sampled_from(["13.0", "12.8", None]),
    gpu_archs=archs_subset,
    cores=st.integers(1, 512),
    ram_bytes=st.integers(0, 2048 * GIB),
    ccache=st.sampled_from([None, "4.9.1", "4.14.2"]),
    sccache=st.sampled_from([None, "0.16.0"]),
    ninja=st.booleans(),
)
config_st = st.builds(
    BuildConfig,
    ram_per_cxx_job_gib=st.floats(0.05, 64),
    ram_per_cuda_job_gib=st.floats(0.05, 16),
    ram_per_link_job_gib=st.floats(0.05, 64),
    max_nvcc_threads=st.integers(1, 16),
    launcher=st.sampled_from(["auto", "ccache", "sccache", "none"]),
)


def _maybe(strategy, source):
    return st.one_of(st.none(), strategy.map(lambda v: Override(v, source)))


overrides_st = st.builds(
    Overrides,
    jobs=_maybe(st.integers(1, 1024), "--jobs"),
    device_threads=_maybe(st.integers(1, 64), "NVCC_THREADS"),
    archs=_maybe(archs_subset.filter(bool).map(";".join), "--arch"),
    build_type=_maybe(st.sampled_from(["Release", "Debug", "RelWithDebInfo", "MinSizeRel"]), "CMAKE_BUILD_TYPE"),
)


def _plan_or_arch_error(facts, overrides, config):
    """The plan, or None when no requested/default arch is supported (a KernloopError by design)."""
    try:
        return make_plan(facts, overrides, config)
    except KernloopError as exc:
        assert "arch" in exc.message
        return None


@settings(max_examples=400, deadline=None)
@given(facts=facts_st, config=config_st)
def test_safe_plan_fits_cores_and_ram(facts, config):
    plan = _plan_or_arch_error(facts, Overrides(), config)
    if plan is None:
        return
    threads = plan.device_threads.value if plan.device_threads else 1
    per_job = math.ceil(plan.ram_per_job_gib.value * GIB)
    assert plan.jobs.value >= 1
    assert 1 <= plan.link_jobs.value <= plan.jobs.value
    assert plan.jobs.value * threads <= facts.cpus.usable
    if per_job <= facts.memory.available_bytes:
        assert plan.jobs.value * per_job <= facts.memory.available_bytes
        assert plan.link_jobs.value * math.ceil(config.ram_per_link_job_gib * GIB) <= facts.memory.available_bytes
    else:  # not even one job fits: still one job, and the user is told
        assert plan.jobs.value == 1
        assert any("below the estimate for one job" in w for w in plan.warnings)
    # ram per job covers every job kind, links included
    assert plan.ram_per_job_gib.value >= max(config.ram_per_cxx_job_gib, config.ram_per_link_job_gib)


@settings(max_examples=400, deadline=None)
@given(facts=facts_st, config=config_st, overrides=overrides_st)
def test_overrides_always_win_and_are_warned_when_unsafe(facts, config, overrides):
    plan = _plan_or_arch_error(facts, overrides, config)
    if plan is None:
        return
    # The safe plan at the nvcc threads the forced plan chose (a --jobs override lowers them: cores / jobs).
    threads = overrides.device_threads
    if threads is None and plan.device_threads is not None and overrides.jobs is not None:
        threads = Override(plan.device_threads.value, "the forced plan")
    safe = _plan_or_arch_error(facts, Overrides(device_threads=threads, archs=overrides.archs), config)
    assert 1 <= plan.link_jobs.value <= plan.jobs.value
    if overrides.jobs is not None:
        assert plan.jobs.value == overrides.jobs.value and plan.jobs.overridden_by == "--jobs"
        exceeds = any(w.startswith(f"jobs={overrides.jobs.value} from --jobs exceeds") for w in plan.warnings)
        assert exceeds == (overrides.jobs.value > safe.jobs.value)
    if overrides.build_type is not None:
        assert plan.build_type.value == overrides.build_type.value
    if plan.cuda:
        if overrides.device_threads is not None:
            assert plan.device_threads.value == overrides.device_threads.value
        if overrides.archs is not None:
            wanted = overrides.archs.value.split(";")
            assert list(plan.archs.value) == [a for a in wanted if a in plan.archs.value]  # order kept
    else:
        assert plan.cache_variables["KERNLOOP_ENABLE_CUDA"] == "OFF"
        assert not any("CUDA" in k and k != "KERNLOOP_ENABLE_CUDA" for k in plan.cache_variables)


@settings(max_examples=300, deadline=None)
@given(facts=facts_st, config=config_st, overrides=overrides_st)
def test_archs_are_supported_by_nvcc_and_each_drop_is_warned_once(facts, config, overrides):
    plan = _plan_or_arch_error(facts, overrides, config)
    if plan is None or not plan.cuda:
        return
    supported = set(facts.nvcc.archs)
    assert plan.archs.value
    assert {a.split("+")[0] for a in plan.archs.value} <= supported
    if overrides.archs is not None:
        wanted = overrides.archs.value.split(";")
        dropped = [a for a in wanted if a not in supported]
        for arch in dropped:
            assert sum(w.startswith(f"arch {arch} (from --arch) dropped") for w in plan.warnings) == 1
    else:  # local GPUs or the default list: PTX exactly once, on the highest arch
        ptx = [a for a in plan.archs.value if a.endswith("+PTX")]
        assert len(ptx) == 1
        assert arch_key(ptx[0]) == max(arch_key(a) for a in plan.archs.value)


@settings(max_examples=200, deadline=None)
@given(facts=facts_st, config=config_st, overrides=overrides_st)
def test_plan_is_deterministic(facts, config, overrides):
    a = _plan_or_arch_error(facts, overrides, config)
    b = _plan_or_arch_error(facts, overrides, config)
    assert a == b
