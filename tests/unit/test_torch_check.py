"""``torch check``: does torch fit nvcc, the driver, Python and the matrix (pure, facts as data)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from buildtools.model import TorchFacts
from buildtools.checks.torch import check_alignment
from buildtools.torchenv.driver import DriverFacts
from buildtools.torchenv.matrix import load_matrix


@dataclass(frozen=True)
class Nvcc:
    version: str
    path: Path = Path("/usr/local/cuda/bin/nvcc")


def torch(version: str, cuda: str | None = None, hip: str | None = None) -> TorchFacts:
    root = Path("/site-packages/torch")
    return TorchFacts(version, cuda, hip, root, root / "share/cmake", True, "test")


@pytest.fixture(scope="module")
def matrix():
    return load_matrix()


def statuses(report):
    return {i.subject: i.status for i in report.items}


def test_this_machine_shape_fits(matrix):
    # torch 2.14.1+cu130, nvcc 13.0, no GPU driver: fits; the missing driver is information only.
    report = check_alignment(torch("2.14.1+cu130", "13.0"), "3.11.7", Nvcc("13.0"), None, matrix)
    assert report.ok
    assert statuses(report) == {"torch": "ok", "python": "ok", "cuda": "ok", "nvcc": "ok", "driver": "note"}
    assert "not a failure" in next(i.message for i in report.items if i.subject == "driver")


def test_nvcc_major_mismatch_is_an_error(matrix):
    report = check_alignment(torch("2.14.1+cu130", "13.0"), "3.11.7", Nvcc("12.8"), None, matrix)
    assert not report.ok
    item = next(i for i in report.items if i.subject == "nvcc")
    assert item.status == "error" and "CUDA majors differ" in item.message and "--nvcc" in item.message


def test_nvcc_minor_mismatch_is_a_warning(matrix):
    report = check_alignment(torch("2.9.1+cu128", "12.8"), "3.12.3", Nvcc("12.6"), None, matrix)
    assert report.ok and statuses(report)["nvcc"] == "warning"


def test_no_nvcc_with_cuda_torch_warns(matrix):
    report = check_alignment(torch("2.14.1+cu130", "13.0"), "3.11.7", None, None, matrix)
    assert report.ok and statuses(report)["nvcc"] == "warning"


@pytest.mark.parametrize(
    "driver_cuda,status",
    [("13.0", "ok"), ("13.2", "ok"), ("12.9", "error")],
)
def test_driver_against_torch_cuda(matrix, driver_cuda, status):
    report = check_alignment(torch("2.14.1+cu130", "13.0"), "3.11.7", Nvcc("13.0"),
                             DriverFacts("5xx", driver_cuda, "test"), matrix)
    assert statuses(report)["driver"] == status
    assert report.ok == (status != "error")


def test_driver_minor_behind_is_a_warning_with_the_minimum(matrix):
    report = check_alignment(torch("2.10.0+cu128", "12.8"), "3.11.7", Nvcc("12.8"),
                             DriverFacts("560.35.05", "12.6", "test"), matrix)
    item = next(i for i in report.items if i.subject == "driver")
    assert item.status == "warning" and ">= 570.26" in item.message


def test_cpu_torch_on_a_cpu_machine_fits(matrix):
    report = check_alignment(torch("2.13.0+cpu"), "3.11.7", Nvcc("13.0"), None, matrix)
    assert report.ok
    assert statuses(report) == {"torch": "ok", "python": "ok", "nvcc": "note", "driver": "note"}
    assert "CPU-only" in report.items[0].message


def test_cpu_torch_with_a_gpu_suggests_a_cuda_build(matrix):
    report = check_alignment(torch("2.13.0"), "3.11.7", None, DriverFacts("580.65.06", "13.0", "t"), matrix)
    item = next(i for i in report.items if i.subject == "driver")
    assert item.status == "note" and "torch index --platform auto" in item.message


def test_torch_outside_the_matrix_and_unpublished_combinations_warn(matrix):
    report = check_alignment(torch("2.15.0+cu130", "13.0"), "3.11.7", Nvcc("13.0"), None, matrix)
    assert report.ok and statuses(report)["torch"] == "warning"
    report = check_alignment(torch("2.14.1+cu128", "12.8"), "3.9.18", Nvcc("12.8"), None, matrix)
    assert statuses(report)["cuda"] == "warning" and statuses(report)["python"] == "warning"
    report = check_alignment(torch("2.14.3+cu130", "13.0"), "3.11.7", Nvcc("13.0"), None, matrix)
    assert "not the 2.14.3 patch" in report.items[0].message


def test_rocm_torch(matrix):
    report = check_alignment(torch("2.9.1+rocm6.4", hip="6.4.43482-0f2d60242"), "3.11.7", None, None, matrix)
    assert report.ok and statuses(report)["rocm"] == "ok"
    assert "driver" not in statuses(report)
