"""Cores and RAM under cgroup v1/v2 limits (fake cgroup trees), GPUs (fake NVML/nvidia-smi)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from buildtools.detect.machine import (
    cgroup_cpu_limit,
    cgroup_membership,
    cgroup_memory_available,
    detect_cpus,
    detect_gpus,
    detect_memory,
    gpus_from_nvml,
    parse_nvidia_smi,
)
from tests.unit._detect_fakes import env_with_path, write_script

GiB = 2**30


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc_self_cgroup"
    path.write_text(text)
    return path


@pytest.fixture
def v2(tmp_path):
    """A pure cgroup v2 tree: /sys/fs/cgroup/ci/job with limits at both levels."""
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    _write(root / "cpu.max", "max 100000\n")  # the root has no limit
    _write(root / "ci" / "cpu.max", "400000 100000\n")
    _write(root / "ci" / "job" / "cpu.max", "250000 100000\n")
    _write(root / "ci" / "memory.max", str(16 * GiB))
    _write(root / "ci" / "memory.current", str(10 * GiB))
    _write(root / "ci" / "memory.stat", f"anon {6 * GiB}\nfile {4 * GiB}\ninactive_file {3 * GiB}\n")
    _write(root / "ci" / "job" / "memory.max", "max\n")
    _write(root / "ci" / "job" / "memory.current", str(1 * GiB))
    return root, _proc(tmp_path, "0::/ci/job\n")


@pytest.fixture
def v1(tmp_path):
    """A cgroup v1 tree as docker lays it out (cpu,cpuacct joined; memory separate)."""
    root = tmp_path / "cgroup"
    cpu = root / "cpu,cpuacct" / "docker" / "abc"
    _write(cpu / "cpu.cfs_quota_us", "150000\n")
    _write(cpu / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    mem = root / "memory" / "docker" / "abc"
    _write(mem / "memory.limit_in_bytes", str(8 * GiB))
    _write(mem / "memory.usage_in_bytes", str(5 * GiB))
    _write(mem / "memory.stat", f"cache {3 * GiB}\ntotal_inactive_file {2 * GiB}\n")
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # "unlimited"
    proc = _proc(
        tmp_path,
        "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n",
    )
    return root, proc


def test_membership_parses_v1_and_v2_lines(v1):
    _, proc = v1
    v2_path, v1_paths = cgroup_membership(proc)
    assert v2_path == "/docker/abc"
    assert v1_paths["cpu"] == v1_paths["cpuacct"] == v1_paths["memory"] == "/docker/abc"
    assert cgroup_membership(proc.parent / "missing") == (None, {})


def test_v2_cpu_quota_takes_the_tightest_level(v2):
    root, proc = v2
    limit = cgroup_cpu_limit(root, proc)
    assert limit.value == 2.5 and "cpu.max 250000/100000" in limit.what and "job" in limit.what
    cpus = detect_cpus(root, proc, affinity=16)
    assert cpus.usable == 2  # 2.5 CPUs: a third job would only be throttled
    assert "min(CPU affinity 16" in cpus.source and "cgroup v2" in cpus.source


def test_affinity_smaller_than_quota_wins(v2):
    root, proc = v2
    cpus = detect_cpus(root, proc, affinity=2)
    assert cpus.usable == 2 and cpus.source.startswith("CPU affinity 2")


def test_v1_cpu_quota(v1):
    root, proc = v1
    assert cgroup_cpu_limit(root, proc).value == 1.5
    assert detect_cpus(root, proc, affinity=8).usable == 1


def test_tiny_quota_still_gives_one_core(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu\n")
    _write(root / "cpu.max", "20000 100000\n")
    assert detect_cpus(root, _proc(tmp_path, "0::/\n"), affinity=4).usable == 1


def test_no_cgroup_files_means_affinity(tmp_path):
    cpus = detect_cpus(tmp_path / "nothing", tmp_path / "nothing", affinity=6)
    assert cpus.usable == 6 and cpus.source == "CPU affinity 6"


def test_namespaced_cgroup_reads_the_mount_itself(tmp_path):
    # With a cgroup namespace /proc/self/cgroup names a path that is not under the mount.
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "cpu.max", "300000 100000\n")
    _write(root / "memory.max", str(4 * GiB))
    _write(root / "memory.current", str(1 * GiB))
    proc = _proc(tmp_path, "0::/kubepods/pod1/ctr\n")
    assert cgroup_cpu_limit(root, proc).value == 3.0
    assert cgroup_memory_available(root, proc).value == 3 * GiB


def test_hybrid_layout_uses_v1_controllers(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "unified" / "cgroup.controllers", "")  # v2 mounted, no controllers in it
    _write(root / "cpu" / "cpu.cfs_quota_us", "200000\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    proc = _proc(tmp_path, "4:cpu:/\n0::/\n")
    assert cgroup_cpu_limit(root, proc).value == 2.0


def test_v2_memory_is_limit_minus_working_set_at_the_tightest_level(v2):
    root, proc = v2
    # ci: 16 GiB - (10 GiB - 3 GiB inactive cache) = 9 GiB; job: no limit.
    limit = cgroup_memory_available(root, proc)
    assert limit.value == 9 * GiB and "memory.max" in limit.what
    memory = detect_memory(root, proc, host=(20 * GiB, "psutil available"))
    assert memory.available_bytes == 9 * GiB
    assert memory.source.startswith("min(psutil available 20.0 GiB") and "cgroup v2" in memory.source


def test_host_memory_wins_when_tighter(v2):
    root, proc = v2
    memory = detect_memory(root, proc, host=(5 * GiB, "psutil available"))
    assert memory.available_bytes == 5 * GiB and memory.source == "psutil available 5.0 GiB"


def test_v1_memory_ignores_unlimited_and_subtracts_working_set(v1):
    root, proc = v1
    # 8 GiB - (5 GiB - 2 GiB) = 5 GiB; the root's 9223372036854771712 means no limit.
    assert cgroup_memory_available(root, proc).value == 5 * GiB
    assert detect_memory(root, proc, host=(64 * GiB, "psutil available")).available_bytes == 5 * GiB


def test_memory_over_limit_is_zero_not_negative(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "memory\n")
    _write(root / "memory.max", str(1 * GiB))
    _write(root / "memory.current", str(2 * GiB))
    assert cgroup_memory_available(root, _proc(tmp_path, "0::/\n")).value == 0


def test_real_host_memory_is_positive():
    memory = detect_memory(Path("/nonexistent"), Path("/nonexistent"))
    assert memory.available_bytes > 0


# -- GPUs -------------------------------------------------------------------------------


def test_parse_nvidia_smi():
    text = "9.0, NVIDIA H100 80GB HBM3\n8.9, NVIDIA L4\n9.0, NVIDIA H100 80GB HBM3\n[N/A], Broken GPU\n\n"
    archs, names = parse_nvidia_smi(text)
    assert archs == ("8.9", "9.0")
    assert names == ("NVIDIA H100 80GB HBM3", "NVIDIA L4", "NVIDIA H100 80GB HBM3")
    assert parse_nvidia_smi("12.0, NVIDIA RTX PRO 6000\n10.0, NVIDIA B200\n")[0] == ("10.0", "12.0")


def _fake_nvml(caps, names, fail=None):
    def init():
        if fail:
            raise RuntimeError(fail)

    return SimpleNamespace(
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(caps),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetCudaComputeCapability=lambda h: caps[h],
        nvmlDeviceGetName=lambda h: names[h],
    )


def test_nvml_is_asked_first(tmp_path):
    nvml = _fake_nvml([(12, 0), (8, 6)], [b"NVIDIA RTX 5090", "NVIDIA RTX A6000"])
    assert gpus_from_nvml(nvml) == (("8.6", "12.0"), ("NVIDIA RTX 5090", "NVIDIA RTX A6000"))
    smi = write_script(tmp_path / "bin" / "nvidia-smi", "echo 'must not be called' >&2; exit 3\n")
    gpus = detect_gpus(env_with_path(smi.parent), nvml=nvml)
    assert gpus.archs == ("8.6", "12.0") and gpus.source == "NVML (2 GPUs)"


def test_nvidia_smi_when_nvml_fails(tmp_path):
    smi = write_script(
        tmp_path / "bin dir" / "nvidia-smi",
        "[ \"$1\" = --query-gpu=compute_cap,name ] && [ \"$2\" = --format=csv,noheader ] || exit 2\n"
        "printf '9.0, NVIDIA H100 80GB HBM3\\n9.0, NVIDIA H100 80GB HBM3\\n'\n",
    )
    gpus = detect_gpus(env_with_path(smi.parent), nvml=_fake_nvml([], [], fail="NVML Shared Library Not Found"))
    assert gpus.archs == ("9.0",) and len(gpus.names) == 2
    assert gpus.source == f"nvidia-smi {smi} (2 GPUs)"


def test_no_gpu_source_says_what_was_tried(tmp_path):
    smi = write_script(
        tmp_path / "bin" / "nvidia-smi",
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9\n",
    )
    gpus = detect_gpus(env_with_path(smi.parent), nvml=_fake_nvml([], [], fail="Driver Not Loaded"))
    assert gpus.archs == () and gpus.names == ()
    assert gpus.source.startswith("none (NVML: Driver Not Loaded; nvidia-smi: NVIDIA-SMI has failed")
    gpus = detect_gpus(env_with_path(tmp_path / "empty"), nvml=None)
    assert gpus.source == "none (NVML: not tried; nvidia-smi: not on PATH)"


def test_nvidia_smi_listing_nothing(tmp_path):
    smi = write_script(tmp_path / "bin" / "nvidia-smi", "exit 0\n")
    gpus = detect_gpus(env_with_path(smi.parent), nvml=None)
    assert gpus.archs == () and "no GPU listed" in gpus.source
