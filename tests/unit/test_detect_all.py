"""detect_all end to end on a fake machine: fake toolkit, fake interpreter + torch, fake cgroups."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from buildtools.detect import DetectOptions, detect_all
from buildtools.errors import KernloopError
from buildtools.util.jsonable import to_jsonable
from tests.unit._detect_fakes import env_with_path, fake_python, fake_toolkit, fake_torch, fake_wrapper, write_script

GiB = 2**30


@pytest.fixture
def machine(tmp_path):
    """A CI box: nvcc 12.8 behind a wrapper, a venv (path with a space) holding a CUDA 12.8
    torch and pip CUDA headers for 12 and 13, a 3-CPU / 6 GiB cgroup v2 limit, one GPU."""
    nvcc = fake_toolkit(tmp_path / "opt" / "cuda-12.8")
    wrapper = fake_wrapper(tmp_path / "usr local bin" / "nvcc", nvcc)
    site = tmp_path / "my venv" / "lib" / "site-packages"
    fake_torch(site, version="2.9.0+cu128", cuda="12.8")
    for name in ("cu12", "cu13", "cusparse"):
        (site / "nvidia" / name / "include").mkdir(parents=True)
    python = fake_python(tmp_path / "my venv" / "bin" / "python", site)
    smi = write_script(tmp_path / "usr local bin" / "nvidia-smi", "printf '8.9, NVIDIA L4\\n'\n")
    cgroup = tmp_path / "cgroup"
    (cgroup / "build").mkdir(parents=True)
    (cgroup / "cgroup.controllers").write_text("cpu memory\n")
    (cgroup / "build" / "cpu.max").write_text("300000 100000\n")
    (cgroup / "build" / "memory.max").write_text(str(6 * GiB))
    (cgroup / "build" / "memory.current").write_text(str(1 * GiB))
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/build\n")
    options = DetectOptions(
        source_dir=tmp_path / "src dir",
        python=python,
        env=env_with_path(wrapper.parent),
        probe_nvml=False,
        cgroup_root=cgroup,
        proc_self_cgroup=proc,
        nvcc_fallbacks=(),
    )
    return options, nvcc, wrapper, site, smi


def test_detect_all_on_a_fake_machine(machine):
    options, nvcc, wrapper, site, smi = machine
    facts = detect_all(options)
    assert facts.source_dir == options.source_dir
    assert facts.python.executable == options.python and facts.python.source == "--python"
    assert facts.torch.version == "2.9.0+cu128" and facts.torch.root == site / "torch"
    assert facts.nvcc.path == nvcc and facts.nvcc.found_as == wrapper and facts.nvcc.root == nvcc.parent.parent
    assert facts.nvcc is not None and facts.torch.cuda is not None  # a CUDA build is possible
    # torch's CUDA major picks cu12, never cu13.
    assert facts.cuda_extra_includes == (
        site / "nvidia" / "cu12" / "include",
        site / "nvidia" / "cusparse" / "include",
    )
    assert facts.cpus.usable == min(len(os.sched_getaffinity(0)), 3)
    assert facts.memory.available_bytes <= 5 * GiB  # 6 GiB limit - 1 GiB used, or less on the host
    assert facts.gpus.archs == ("8.9",) and facts.gpus.names == ("NVIDIA L4",)
    # Nothing of this machine's toolchain leaks in through PATH.
    assert facts.cmake is None and facts.ccache is None and facts.ccache_caches_nvcc is None
    assert any("cmake >= 3.26 not found" in n for n in facts.notes)
    json.dumps(to_jsonable(facts))  # --json must be able to print it


def test_torch_and_nvcc_cuda_mismatch_is_noted(machine):
    options, *_ = machine
    site = Path(options.python).parent.parent / "lib" / "site-packages"
    fake_torch(site, version="2.14.1+cu130", cuda="13.0")
    facts = detect_all(options)
    assert facts.cuda_extra_includes[0] == site / "nvidia" / "cu13" / "include"
    assert any("built with CUDA 13.0 but nvcc is 12.8" in n for n in facts.notes)


def test_cpu_torch_and_no_nvcc_is_a_cpu_only_machine(machine, tmp_path):
    options, *_ = machine
    site = tmp_path / "cpu env" / "site-packages"
    fake_torch(site, version="2.13.0+cpu", cuda=None)
    options = DetectOptions(
        source_dir=options.source_dir,
        python=fake_python(tmp_path / "cpu env" / "bin" / "python", site),
        env=env_with_path(tmp_path / "empty"),
        probe_nvml=False,
        cgroup_root=options.cgroup_root,
        proc_self_cgroup=options.proc_self_cgroup,
        nvcc_fallbacks=(),
    )
    facts = detect_all(options)
    assert facts.nvcc is None and facts.torch.cuda is None
    assert any("nvcc not found" in n for n in facts.notes)
    assert any("CPU-only" in n for n in facts.notes)
    assert facts.gpus.archs == () and facts.gpus.source.startswith("none")


def test_torch_missing_is_a_fact_not_an_error(machine, tmp_path):
    options, *_ = machine
    options = DetectOptions(**{**options.__dict__, "python": fake_python(tmp_path / "bare" / "python", None)})
    facts = detect_all(options)
    assert facts.torch is None
    assert any(n.startswith(f"torch is not installed in {options.python}") for n in facts.notes)


@pytest.mark.parametrize("field, value, flag", [("nvcc", "missing/nvcc", "--nvcc"), ("python", "missing/python", "--python")])
def test_user_errors_surface_as_kernloop_errors(machine, tmp_path, field, value, flag):
    options, *_ = machine
    options = DetectOptions(**{**options.__dict__, field: tmp_path / value})
    with pytest.raises(KernloopError) as err:
        detect_all(options)
    assert flag in err.value.one_line()


def test_cuda_home_pointing_nowhere_stops_detection(machine, tmp_path):
    options, *_ = machine
    env = {**options.env, "CUDA_HOME": str(tmp_path / "cuda-11.8")}
    with pytest.raises(KernloopError, match="CUDA_HOME="):
        detect_all(DetectOptions(**{**options.__dict__, "env": env}))
