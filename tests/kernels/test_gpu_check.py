"""tools/gpu_check.sh: one line and exit 0 without a GPU; the whole check as a dry run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "gpu_check.sh"


def gpu_check(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("KERNLOOP_GPU_CHECK")}
    full.update({"KERNLOOP_PYTHON": sys.executable, **(env or {})})
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


@pytest.fixture
def no_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: gpu_check.sh would run the whole check")


def test_without_a_gpu_one_line_and_exit_0(no_gpu, tmp_path):
    p = gpu_check("--out", str(tmp_path / "report.md"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert len(p.stdout.splitlines()) == 1 and "no CUDA GPU visible" in p.stdout
    assert list(tmp_path.iterdir()) == []  # no report, nothing else


def test_bad_usage(tmp_path):
    p = gpu_check("--frobnicate")
    assert p.returncode == 2 and "unknown argument '--frobnicate'" in p.stderr
    p = gpu_check(env={"KERNLOOP_PYTHON": str(tmp_path / "no-python")})
    assert p.returncode == 2 and "torch does not import" in p.stderr and p.stderr.count("\n") == 1
    p = gpu_check("--help")
    assert p.returncode == 0 and "--out REPORT.md" in p.stdout


@pytest.mark.integration
def test_dry_run_builds_tests_benchmarks_and_reports(no_gpu, kernloop_build, tmp_path):
    """KERNLOOP_GPU_CHECK_ARCHS runs every stage without a GPU (the session build has filled the
    compiler cache, so the build is cache hits): copy, build, pytest -m gpu, bench, report."""
    del kernloop_build
    report = tmp_path / "out" / "report.md"
    p = gpu_check("--out", str(report), env={"KERNLOOP_GPU_CHECK_ARCHS": "9.0"}, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    text = report.read_text()
    for section in ("## Machine", "## Build", "## CUDA tests", "## Benchmarks"):
        assert section in text
    assert "- archs: 9.0" in text and re.search(r"- ok in \d+ s", text)
    skipped = re.search(r"0 passed, 0 failed, 0 errors, (\d+) skipped", text)
    assert skipped and int(skipped.group(1)) > 300, text  # the GPU matrix and the kernel tests' cuda cases
    assert "skipped: no CUDA device here" in text
    work = re.search(r"copying the tree to (\S+)/src", p.stderr)
    assert work and not Path(work.group(1)).exists()  # removed without --keep
    assert not (REPO / "gpu-check-report.md").exists()
