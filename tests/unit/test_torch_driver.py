"""NVIDIA driver and ROCm detection.

This machine has no GPU, so the driver is faked where needed: an ``nvidia-smi`` script printing a
real banner, and ROCm install trees under tmp_path.
"""
from __future__ import annotations

import stat

import pytest

from buildtools.torchenv.driver import (
    cuda_from_nvml_int,
    detect_nvidia_driver,
    detect_rocm,
    max_cuda_for_driver,
    parse_nvidia_smi,
)
from buildtools.torchenv.matrix import load_matrix

# The top of `nvidia-smi` on an H100 node (driver 580, CUDA 13.0).
SMI_BANNER = """\
Mon Nov 16 10:02:11 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.65.06              Driver Version: 580.65.06      CUDA Version: 13.0     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+
"""


def test_parse_nvidia_smi_banner():
    assert parse_nvidia_smi(SMI_BANNER) == ("580.65.06", "13.0")
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.") == (None, None)


@pytest.mark.parametrize("value,cuda", [(13000, "13.0"), (12080, "12.8"), (12040, "12.4"), (11080, "11.8"), (12090, "12.9")])
def test_nvml_cuda_encoding(value, cuda):
    assert cuda_from_nvml_int(value) == cuda


@pytest.mark.parametrize(
    "driver,cuda",
    [("580.65.06", "13.0"), ("580.95.05", "13.0"), ("575.57.08", "12.9"), ("570.124.06", "12.8"),
     ("560.35.05", "12.6"), ("535.183.01", "11.8"), ("470.256.02", None), ("garbage", None)],
)
def test_max_cuda_for_driver(driver, cuda):
    assert max_cuda_for_driver(driver, load_matrix().cuda_min_driver) == cuda


def _script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_detect_driver_from_nvidia_smi(tmp_path):
    banner = tmp_path / "banner.txt"
    banner.write_text(SMI_BANNER)
    smi = _script(tmp_path / "nvidia-smi", f'cat "{banner}"\n')
    found = detect_nvidia_driver(nvml=False, smi=str(smi))
    assert (found.version, found.cuda) == ("580.65.06", "13.0")
    assert str(smi) in found.source


def test_failing_or_missing_nvidia_smi_is_no_driver(tmp_path):
    broken = _script(tmp_path / "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")
    assert detect_nvidia_driver(nvml=False, smi=str(broken)) is None
    assert detect_nvidia_driver(nvml=False, smi=str(tmp_path / "absent")) is None


def test_rocm_version_file(tmp_path):
    root = tmp_path / "rocm"
    (root / ".info").mkdir(parents=True)
    (root / ".info" / "version").write_text("6.4.1-120\n")
    found = detect_rocm(env={}, roots=[root], kfd=tmp_path / "kfd")
    assert found.version == "6.4.1" and ".info/version" in found.source


def test_rocm_from_env_root_and_versioned_dir(tmp_path):
    versioned = tmp_path / "opt" / "rocm-6.3.2"
    versioned.mkdir(parents=True)
    assert detect_rocm(env={}, roots=[tmp_path / "missing", versioned], kfd=tmp_path / "kfd").version == "6.3.2"
    env_root = tmp_path / "custom"
    (env_root / ".info").mkdir(parents=True)
    (env_root / ".info" / "version").write_text("7.2.0\n")
    assert detect_rocm(env={"ROCM_PATH": str(env_root), "PATH": ""}).version == "7.2.0"


def test_rocm_kernel_driver_without_version(tmp_path):
    kfd = tmp_path / "kfd"
    kfd.write_text("")
    found = detect_rocm(env={"PATH": ""}, roots=[], kfd=kfd)
    assert found.version is None and "amdgpu" in found.source
    assert detect_rocm(env={"PATH": ""}, roots=[], kfd=tmp_path / "none") is None
