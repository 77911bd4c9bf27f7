"""Planner on fake facts: numbers, reasons, overrides, archs, platforms, launchers."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from buildtools.cache import peaks
from buildtools.settings import BuildConfig
from buildtools.errors import KernloopError
from buildtools.model import GIB
from buildtools.settings import Overrides
from buildtools.plan.planner import make_plan
from fake_facts import make_facts

CUDA_ONLY_VARS = {"CMAKE_CUDA_COMPILER", "CUDA_TOOLKIT_ROOT_DIR", "CUDAToolkit_ROOT", "NVCC_THREADS",
                  "TORCH_CUDA_ARCH_LIST", "KERNLOOP_CUDA_EXTRA_INCLUDE_DIRS", "CMAKE_CUDA_COMPILER_LAUNCHER"}


def ov(env=None, **flags):
    return Overrides.from_sources(env=env or {}, **flags)


# -- jobs and their reasons ----------------------------------------------------------------------
def test_jobs_reason_names_both_bounds():
    # 12 cores, 2 archs -> 2 nvcc threads; 14.2 GiB / 2.0 GiB per job -> 7 by RAM, 6 by cores.
    facts = make_facts(cores=12, ram_gib=14.2)
    plan = make_plan(facts, ov(arch="8.0;9.0"), BuildConfig(ram_per_cxx_job_gib=2.0))
    assert plan.device_threads.value == 2
    assert plan.jobs.value == 6
    assert plan.jobs.reason == "min(cores 12 / nvcc-threads 2, RAM 14.2 GiB / 2.0 GiB per job)"


def test_ram_bounds_jobs_below_cores():
    plan = make_plan(make_facts(cores=64, ram_gib=4.0), ov(arch="9.0"), BuildConfig(ram_per_cxx_job_gib=1.5))
    assert plan.jobs.value == 2  # floor(4.0 / 1.5)
    assert plan.jobs.value * plan.device_threads.value <= 64


def test_nvcc_threads_raise_ram_per_job():
    config = BuildConfig(ram_per_cxx_job_gib=0.5, ram_per_cuda_job_gib=1.0, ram_per_link_job_gib=0.5)
    plan = make_plan(make_facts(cores=16, ram_gib=100), ov(arch="8.0;9.0;10.0;12.0"), config)
    assert plan.device_threads.value == 4
    assert plan.ram_per_job_gib.value == 4.0
    assert "CUDA TU 1 x nvcc-threads 4" in plan.ram_per_job_gib.reason


def test_too_little_ram_still_plans_one_job_with_a_warning():
    plan = make_plan(make_facts(cores=8, ram_gib=0.5))
    assert plan.jobs.value == 1 and plan.link_jobs.value == 1
    assert any("below the estimate for one job" in w for w in plan.warnings)


def test_link_pool_is_smaller_and_bounded_by_ram():
    plan = make_plan(make_facts(cores=32, ram_gib=200), ov(arch="9.0"))
    assert plan.link_jobs.value == plan.jobs.value // 2
    # Links alone must fit even when the user forces more compile jobs than RAM allows.
    forced = make_plan(make_facts(cores=32, ram_gib=3.2), ov(arch="9.0", jobs=20),
                       BuildConfig(ram_per_cxx_job_gib=0.1, ram_per_link_job_gib=1.5))
    assert forced.link_jobs.value == 2  # floor(3.2 / 1.5), although jobs // 2 is 10
    assert forced.link_jobs.reason == "min(jobs 20 / 2, RAM 3.2 GiB / 1.5 GiB per link), at least 1"


def test_job_pools_are_defined_and_assigned():
    plan = make_plan(make_facts(cores=12, ram_gib=64), ov(arch="9.0"))
    cv = plan.cache_variables
    assert cv["CMAKE_JOB_POOLS"] == f"compile={plan.jobs.value};link={plan.link_jobs.value}"
    assert cv["CMAKE_JOB_POOL_COMPILE"] == "compile" and cv["CMAKE_JOB_POOL_LINK"] == "link"


# -- overrides -------------------------------------------------------------------------------------
def test_flag_beats_env_and_env_beats_plan():
    env = {"MAX_JOBS": "3", "NVCC_THREADS": "2", "TORCH_CUDA_ARCH_LIST": "8.0", "CMAKE_BUILD_TYPE": "debug"}
    from_env = make_plan(make_facts(), ov(env=env))
    assert (from_env.jobs.value, from_env.device_threads.value) == (3, 2)
    assert from_env.archs.value == ("8.0",) and from_env.build_type.value == "Debug"
    assert from_env.jobs.overridden_by == "MAX_JOBS"
    flags = make_plan(make_facts(), ov(env=env, jobs=5, nvcc_threads=1, arch="9.0", build_type="RelWithDebInfo"))
    assert (flags.jobs.value, flags.device_threads.value) == (5, 1)
    assert flags.archs.value == ("9.0",) and flags.build_type.value == "RelWithDebInfo"
    assert flags.jobs.overridden_by == "--jobs" and flags.archs.overridden_by == "--arch"


def test_empty_env_vars_count_as_unset():
    o = ov(env={"MAX_JOBS": "", "NVCC_THREADS": " ", "TORCH_CUDA_ARCH_LIST": "", "CMAKE_BUILD_TYPE": ""})
    assert o == Overrides()


@pytest.mark.parametrize(
    "kwargs, env, named",
    [
        ({}, {"MAX_JOBS": "many"}, "MAX_JOBS"),
        ({}, {"MAX_JOBS": "0"}, "MAX_JOBS"),
        ({"jobs": "-2"}, {}, "--jobs"),
        ({}, {"NVCC_THREADS": "1.5"}, "NVCC_THREADS"),
        ({}, {"CMAKE_BUILD_TYPE": "Fast"}, "CMAKE_BUILD_TYPE"),
        ({"build_type": "fastest"}, {}, "--build-type"),
        ({"arch": "  "}, {}, "--arch"),
    ],
)
def test_malformed_override_names_its_source(kwargs, env, named):
    with pytest.raises(KernloopError) as err:
        ov(env=env, **kwargs)
    assert named in err.value.one_line()


def test_override_beyond_safe_plan_wins_with_a_warning():
    plan = make_plan(make_facts(cores=2, ram_gib=64), ov(jobs=9, arch="9.0"))
    assert plan.jobs.value == 9
    assert plan.jobs.reason.startswith("from --jobs (safe plan: 2 = ")
    assert [w for w in plan.warnings if w.startswith("jobs=9 from --jobs exceeds the safe plan of 2")]
    within = make_plan(make_facts(cores=2, ram_gib=64), ov(jobs=1, arch="9.0"))
    assert not [w for w in within.warnings if "exceeds" in w]


def test_nvcc_threads_override_beyond_cores_warns_and_leaves_one_job():
    plan = make_plan(make_facts(cores=4, ram_gib=64), ov(nvcc_threads=8, arch="9.0"))
    assert plan.device_threads.value == 8 and plan.jobs.value == 1
    assert any("nvcc-threads=8 from --nvcc-threads exceeds the 4 usable cores" in w for w in plan.warnings)


def test_jobs_override_leaves_nvcc_threads_the_remaining_cores():
    plan = make_plan(make_facts(cores=16, ram_gib=64), ov(jobs=4, arch="8.0;9.0;10.0;12.0"))
    assert plan.device_threads.value == 4  # 16 cores / 4 jobs
    assert "cores 16 / jobs 4" in plan.device_threads.reason


# -- archs -----------------------------------------------------------------------------------------
def test_user_archs_win_in_their_order_and_unsupported_ones_drop_with_one_warning_each():
    plan = make_plan(make_facts(gpu_archs=("9.0",)), ov(arch="12.0;7.0 9.0a;6.1;8.0+PTX"))
    assert plan.archs.value == ("12.0", "9.0a", "8.0+PTX")
    dropped = [w for w in plan.warnings if "dropped" in w]
    assert len(dropped) == 2
    assert any(w.startswith("arch 7.0 (from --arch) dropped: nvcc 13.0") for w in dropped)
    assert any(w.startswith("arch 6.1 (from --arch) dropped") for w in dropped)
    assert plan.cache_variables["TORCH_CUDA_ARCH_LIST"] == "12.0;9.0a;8.0+PTX"


def test_no_supported_user_arch_is_an_error_naming_the_source():
    with pytest.raises(KernloopError) as err:
        make_plan(make_facts(), ov(env={"TORCH_CUDA_ARCH_LIST": "6.0;7.0"}))
    assert "TORCH_CUDA_ARCH_LIST" in err.value.one_line() and "--arch" in err.value.one_line()


@pytest.mark.parametrize("bad", ["sm_90", "9", "9.0+SASS", "nine"])
def test_malformed_arch_is_an_error(bad):
    with pytest.raises(KernloopError) as err:
        make_plan(make_facts(), ov(arch=bad))
    assert "--arch" in err.value.one_line()


def test_local_gpus_give_their_archs_with_ptx_on_the_highest():
    plan = make_plan(make_facts(gpu_archs=("9.0", "8.6", "9.0")))
    assert plan.archs.value == ("8.6", "9.0+PTX")
    assert plan.archs.reason.startswith("local GPUs")


def test_local_gpu_newer_than_nvcc_falls_back_to_the_default_list():
    facts = make_facts(gpu_archs=("12.0",), nvcc_version="12.4", torch_cuda="12.4",
                       nvcc_archs=("5.0", "6.0", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0"))
    plan = make_plan(facts)
    assert plan.archs.value == ("8.0", "9.0+PTX")  # defaults 10.0 and 12.0 dropped, PTX moves down
    assert sum("dropped" in w for w in plan.warnings) == 3  # the GPU's 12.0, default 10.0 and 12.0+PTX


def test_default_archs_without_a_gpu():
    plan = make_plan(make_facts(gpu_archs=()))
    assert plan.archs.value == ("8.0", "9.0", "10.0", "12.0+PTX")
    assert "no GPU visible" in plan.archs.reason
    custom = make_plan(make_facts(), config=BuildConfig(default_cuda_archs=("9.0", "8.0")))
    assert custom.archs.value == ("9.0+PTX", "8.0")


def test_unlisted_nvcc_archs_leave_the_list_unchecked_with_a_warning():
    plan = make_plan(make_facts(nvcc_archs=()), ov(arch="3.5"))
    assert plan.archs.value == ("3.5",)
    assert any("did not list its archs" in w for w in plan.warnings)


# -- platforms -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "facts_kwargs, why",
    [
        ({"nvcc": False}, "nvcc not found"),
        ({"torch_cuda": None}, "is a CPU build"),
        ({"torch_cuda": None, "torch_hip": "6.2"}, "is a ROCm build"),
        ({"torch": False}, "torch not found"),
    ],
)
def test_cpu_only_plan_has_no_cuda_variables_and_says_why(facts_kwargs, why):
    plan = make_plan(make_facts(**facts_kwargs), None, BuildConfig(ram_per_cxx_job_gib=1.5))
    assert plan.platform.value == "cpu" and not plan.cuda
    assert plan.platform.reason.startswith("CPU-only plan: ") and why in plan.platform.reason
    assert plan.cache_variables["KERNLOOP_ENABLE_CUDA"] == "OFF"
    assert not CUDA_ONLY_VARS & set(plan.cache_variables)
    assert plan.device_threads is None and plan.archs is None
    assert plan.jobs.reason == "min(cores 12, RAM 14.2 GiB / 1.5 GiB per job)"


def test_cpu_plan_ignores_device_overrides_with_a_warning():
    plan = make_plan(make_facts(nvcc=False), ov(arch="9.0", env={"NVCC_THREADS": "4"}))
    assert "--arch ignored: this is a CPU-only plan" in plan.warnings
    assert "NVCC_THREADS ignored: this is a CPU-only plan" in plan.warnings


def test_cuda_plan_variables():
    facts = make_facts(source_dir=Path("/src/with space"))
    cv = make_plan(facts, ov(arch="9.0")).cache_variables
    assert cv["KERNLOOP_ENABLE_CUDA"] == "ON"
    assert cv["CMAKE_CUDA_COMPILER"] == "/usr/local/cuda-13.0/bin/nvcc"  # the real one, not the wrapper
    assert cv["CUDA_TOOLKIT_ROOT_DIR"] == "/usr/local/cuda-13.0"
    assert cv["KERNLOOP_CUDA_EXTRA_INCLUDE_DIRS"] == "/venv/site-packages/nvidia/cu13/include"
    assert cv["KERNLOOP_PYTHON_EXECUTABLE"] == str(facts.python.executable)
    assert cv["CMAKE_EXPORT_COMPILE_COMMANDS"] == "ON"
    assert cv["CMAKE_MAKE_PROGRAM"] == "/opt/tools/bin/ninja"


def test_nvcc_and_torch_cuda_major_mismatch_warns():
    plan = make_plan(make_facts(nvcc_version="12.8", torch_cuda="13.0"), ov(arch="9.0"))
    assert any("CUDA majors differ" in w for w in plan.warnings)


# -- launchers --------------------------------------------------------------------------------------
def test_ccache_wraps_all_languages_with_its_environment():
    plan = make_plan(make_facts(source_dir=Path("/src/k")), ov(arch="9.0"))
    launcher = plan.launcher.value
    assert launcher.name == "ccache" and launcher.languages == ("C", "CXX", "CUDA")
    for lang in ("C", "CXX", "CUDA"):
        assert plan.cache_variables[f"CMAKE_{lang}_COMPILER_LAUNCHER"] == "/opt/tools/bin/ccache"
    # --threads out of the key: it is chosen per build (buildtools.cache.nvcc_threads)
    # CCACHE_PREFIX: the peak-RSS recorder on every real compile (buildtools.cache.peaks), then the user's prefix
    recorder = f"{make_facts().python.executable} -I -S {peaks.RECORDER} $penv{{CCACHE_PREFIX}}"
    assert plan.environment == {"CCACHE_BASEDIR": "/src/k", "CCACHE_NOHASHDIR": "true", "CCACHE_IGNOREOPTIONS": "--threads=*",
                                "CCACHE_PREFIX": recorder}


@pytest.mark.parametrize("facts_kwargs", [{"ccache": "4.9.1"}, {"ccache": "4.14.2", "ccache_caches_nvcc": False}])
def test_ccache_that_cannot_cache_nvcc_is_used_for_c_and_cxx_only(facts_kwargs):
    plan = make_plan(make_facts(**facts_kwargs), ov(arch="9.0"))
    assert plan.launcher.value.languages == ("C", "CXX")
    assert "CMAKE_CUDA_COMPILER_LAUNCHER" not in plan.cache_variables
    assert any("cannot cache nvcc" in w and "C/C++ only" in w for w in plan.warnings)


def test_sccache_when_no_ccache_and_config_choices():
    plan = make_plan(make_facts(ccache=None, sccache="0.16.0", source_dir=Path("/s")), ov(arch="9.0"))
    assert plan.launcher.value.name == "sccache"
    assert plan.environment["SCCACHE_BASEDIRS"] == "/s"
    none = make_plan(make_facts(), ov(arch="9.0"), BuildConfig(launcher="none"))
    assert none.launcher.value is None and not any("LAUNCHER" in k for k in none.cache_variables)
    missing = make_plan(make_facts(sccache=None), ov(arch="9.0"), BuildConfig(launcher="sccache"))
    assert missing.launcher.value is None and any("sccache not found" in w for w in missing.warnings)
    cache_dir = make_plan(make_facts(), ov(arch="9.0"), BuildConfig(cache_dir=Path("/cache")))
    assert cache_dir.environment["CCACHE_DIR"] == "/cache"


def test_missing_ninja_and_cmake_are_warned():
    plan = make_plan(make_facts(ninja=False, cmake=False), ov(arch="9.0"))
    assert "CMAKE_MAKE_PROGRAM" not in plan.cache_variables
    assert any("ninja not found" in w for w in plan.warnings)
    assert any("cmake not found" in w for w in plan.warnings)


# -- purity and entry-point helpers -------------------------------------------------------------------
def test_plan_is_pure_and_deterministic():
    facts = make_facts(gpu_archs=("8.9",))
    before = dataclasses.replace(facts)
    a, b = make_plan(facts, ov(jobs=3)), make_plan(facts, ov(jobs=3))
    assert a == b and facts == before


def test_cmake_defines_for_other_entry_points():
    plan = make_plan(make_facts(), ov(build_type="Debug", arch="9.0"))
    defines = plan.cmake_defines(install_prefix="/x")
    assert defines["CMAKE_BUILD_TYPE"] == "Debug" and defines["CMAKE_INSTALL_PREFIX"] == "/x"
    assert plan.cmake_defines(build_type="Release")["CMAKE_BUILD_TYPE"] == "Release"
    assert {k: v for k, v in defines.items() if k not in ("CMAKE_BUILD_TYPE", "CMAKE_INSTALL_PREFIX")} == dict(
        plan.cache_variables)


def test_bytes_are_exact_at_the_boundary():
    # Exactly 3 jobs' worth of RAM gives 3 jobs, one byte less gives 2.
    config = BuildConfig(ram_per_cxx_job_gib=1.0, ram_per_link_job_gib=1.0)
    assert make_plan(make_facts(cores=64, ram_bytes=3 * GIB), ov(arch="9.0"), config).jobs.value == 3
    assert make_plan(make_facts(cores=64, ram_bytes=3 * GIB - 1), ov(arch="9.0"), config).jobs.value == 2


def test_a_platform_adds_to_the_launcher_environment_through_its_hook():
    from buildtools.plan.platforms.cpu import CpuPlatform
    from buildtools.plan.platforms.cuda import CudaPlatform

    class Extra(CudaPlatform):
        def launcher_environment(self, facts, launcher):
            return {"CCACHE_EXTRAFILES": "/opt/rocm/.info/version", "CCACHE_BASEDIR": "/elsewhere"}

    plan = make_plan(make_facts(), platforms=(Extra(), CpuPlatform()))
    assert plan.environment["CCACHE_EXTRAFILES"] == "/opt/rocm/.info/version"
    assert plan.environment["CCACHE_BASEDIR"] == "/elsewhere"  # the platform's word wins over the default
    assert "CCACHE_EXTRAFILES" not in make_plan(make_facts()).environment


def test_a_plugin_hook_returning_the_wrong_type_is_a_plugin_failure():
    from buildtools.plan.platforms.cuda import CudaPlatform
    from buildtools.plugins.guard import GuardedPlatform
    from buildtools.plugins.spec import PluginFailure, PluginSpec

    class Bad(CudaPlatform):
        name = "bad"

        def launcher_environment(self, facts, launcher):
            return ["not", "a", "mapping"]

    guarded = GuardedPlatform(Bad(), PluginSpec("bad", "x:Bad", "test"))
    with pytest.raises(PluginFailure, match="launcher_environment"):
        make_plan(make_facts(), platforms=(guarded,))
