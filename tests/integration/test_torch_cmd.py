"""``python -m buildtools torch index|check|bump`` end to end, on this machine's real environment.

Expected values come from the same detection the command uses (in-process) or from the matrix,
so the tests hold on a GPU machine as well as on this CPU-only one.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools.checks.torch import check_alignment
from buildtools.torchenv.driver import detect_nvidia_driver, detect_rocm
from buildtools.torchenv.index import choose_auto
from buildtools.torchenv.matrix import load_matrix
from buildtools.torchenv.probe import detect_nvcc, target_env

# Helpers shared with the wheels test: self-written wheels and a torch stand-in (see its docstring).
from test_wheels_align import Venv, build_wheelhouse

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
W = "https://download.pytorch.org/whl"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "buildtools", *args], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=600)


def one_line_error(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


# ---- torch index ---------------------------------------------------------------------------------

def test_index_auto_matches_this_machines_driver():
    matrix = load_matrix()
    driver = detect_nvidia_driver()
    expected, _, _ = choose_auto(matrix.latest, driver, None if driver else detect_rocm(), matrix)
    run = cli("torch", "index")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"--extra-index-url {W}/{expected.tag}\n"
    assert run.stderr.startswith(f"# {expected.tag} (stable, torch {matrix.latest.minor}): ")


@pytest.mark.parametrize(
    "args,stdout",
    [
        (["--platform", "cu128", "--torch", "2.10.0"], f"--extra-index-url {W}/cu128"),
        (["--platform", "cu130", "--uv"], f"--extra-index-url {W}/cu130 --index-strategy unsafe-best-match"),
        (["--platform", "cpu", "--primary"], f"--index-url {W}/cpu"),
        (["--platform", "cu130", "--channel", "test", "--url"], f"{W}/test/cu130"),
        (["--platform", "cu126", "--channel", "nightly"], f"--pre --extra-index-url {W}/nightly/cu126"),
        (["--driver-cuda", "12.9", "--torch", "2.8"], f"--extra-index-url {W}/cu129"),
        (["--driver-cuda", "12.9"], f"--extra-index-url {W}/cu126"),
    ],
)
def test_index_cli_table(args, stdout):
    run = cli("torch", "index", *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout == stdout + "\n"


def test_index_json():
    data = json.loads(cli("torch", "index", "--platform", "rocm6.4", "--torch", "2.9.1", "--json").stdout)
    assert data["url"] == f"{W}/rocm6.4" and data["torch_release"] == "2.9" and data["tool"] == "pip"


@pytest.mark.parametrize(
    "args,text",
    [
        (["--platform", "cu999"], "unknown platform 'cu999'"),
        (["--platform", "cuda"], "unknown platform 'cuda'"),
        (["--channel", "beta"], "unknown channel 'beta'"),
        (["--platform", "cu128", "--torch", "2.14.1"], "torch 2.14 publishes no cu128 wheels"),
        (["--torch", "1.13.1"], "not in the compatibility matrix"),
        (["--torch", "2.x"], "malformed version '2.x'"),
        (["--driver-cuda", "new"], "--driver-cuda 'new' is not a CUDA version"),
    ],
)
def test_index_bad_inputs(args, text):
    assert text in one_line_error(cli("torch", "index", *args))


# ---- torch check ---------------------------------------------------------------------------------

def test_check_on_this_environment():
    target = target_env(None)
    if target.torch is None:
        pytest.skip("no torch in the test interpreter")
    nvcc, _ = detect_nvcc(None)
    report = check_alignment(target.torch, target.python.version, nvcc, detect_nvidia_driver(), load_matrix())
    run = cli("torch", "check")
    assert run.returncode == (0 if report.ok else 1), run.stdout + run.stderr
    assert f"{target.torch.version} (" in run.stdout
    verdict = ("fit" if report.ok else "do NOT fit") + (" (with warnings)" if report.worst == "warning" else "")
    assert run.stdout.rstrip().splitlines()[-1] == f"torch, nvcc and driver {verdict}"
    data = json.loads(cli("torch", "check", "--json").stdout)
    assert data["fits"] == report.ok and data["torch"]["version"] == target.torch.version
    assert [i["status"] for i in data["items"]] == [i.status for i in report.items]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Venv:
    root = tmp_path_factory.mktemp("check") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True, timeout=300)
    return Venv(root, build_wheelhouse(tmp_path_factory.mktemp("wheelhouse")))


def test_check_cpu_torch_stand_in(venv):
    venv.start("torch==2.13.0+cpu")
    run = cli("torch", "check", "--python", str(venv.python))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2.13.0+cpu (CPU-only), in the matrix" in run.stdout
    driver = "fine for a CPU-only torch" if detect_nvidia_driver() is None else "a CUDA torch would use the GPU"
    assert driver in run.stdout


def test_check_nvcc_major_mismatch_fails(venv, tmp_path):
    # A CUDA 12.8 nvcc next to a CUDA 13.0 torch: a machine we do not have, so nvcc is a fake script.
    nvcc = tmp_path / "nvcc"
    nvcc.write_text("#!/bin/sh\ncase \"$1\" in\n  --version) echo 'Cuda compilation tools, release 12.8, V12.8.93';;\n"
                    "  -dryrun) echo \"#\\$ TOP=$(dirname \"$0\")/..\" >&2;;\n  *) echo compute_90;;\nesac\n")
    nvcc.chmod(0o755)
    venv.start("torch==2.14.1+cu130")
    run = cli("torch", "check", "--python", str(venv.python), "--nvcc", str(nvcc))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "ERROR nvcc" in run.stdout and "CUDA majors differ" in run.stdout and "do NOT fit" in run.stdout


def test_check_without_torch_is_one_line(venv):
    venv.start()
    assert f"torch is not installed in {venv.python}" in one_line_error(cli("torch", "check", "--python", str(venv.python)))


@pytest.mark.parametrize("flag", ["--python", "--nvcc"])
def test_check_bad_paths_are_one_line(tmp_path, flag):
    one_line_error(cli("torch", "check", flag, str(tmp_path / "nope")))


def test_real_cpu_torch_build(tmp_path):
    """The CPU build of torch 2.13.0 this project supports (requirements/torch-cpu.txt), really installed.

    Uses the machine's pip configuration to find the wheel; --no-deps since only its files are read.
    """
    root = tmp_path / "cpu"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True, timeout=300)
    py = root / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "torch==2.13.0"],
                          capture_output=True, text=True, timeout=600)
    if inst.returncode != 0:
        pytest.skip("no local torch 2.13.0 wheel for this machine: " + (inst.stderr.strip().splitlines() or ["?"])[-1])
    run = cli("torch", "check", "--python", str(py))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2.13.0+cpu (CPU-only), in the matrix" in run.stdout
    align = cli("wheels", "align", "--python", str(py), "--package", "nixl", "--dry-run")
    assert align.returncode == 0 and "nixl: not installed; nothing to align" in align.stdout


# ---- torch bump ----------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of this repository's requirements/ and pyproject.toml."""
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bump_dry_run_then_write(project):
    before = snapshot(project)
    pins = {rel for rel, text in before.items() if "torch==" in text}
    dry = cli("torch", "bump", "2.14.0", "--dry-run", "--project", str(project))
    assert dry.returncode == 0, dry.stderr
    assert snapshot(project) == before
    for rel in pins:
        assert f"--- a/{rel}\n+++ b/{rel}\n" in dry.stdout
    assert "+torch==2.14.0" in dry.stdout
    run = cli("torch", "bump", "2.14.0", "--project", str(project))
    assert run.returncode == 0, run.stderr
    after = snapshot(project)
    for rel, text in after.items():
        assert text == before[rel].replace("torch==2.14.1", "torch==2.14.0").replace("torch==2.13.0", "torch==2.14.0")
    assert "updated" in run.stdout
    assert "nothing to change" in cli("torch", "bump", "2.14.0", "--project", str(project)).stdout


def test_bump_unknown_combination_needs_force(project):
    before = snapshot(project)
    line = one_line_error(cli("torch", "bump", "2.15.0", "--project", str(project)))
    assert "torch 2.15.0 is not in the compatibility matrix" in line and "--force" in line
    assert snapshot(project) == before
    forced = cli("torch", "bump", "2.15.0", "--force", "--project", str(project))
    assert forced.returncode == 0, forced.stderr
    assert "(written anyway: --force)" in forced.stderr
    assert all("torch==2.15.0" in t for t in snapshot(project).values() if "torch==" in t)


@pytest.mark.parametrize(
    "args,text",
    [
        (["2.15"], "malformed torch version '2.15'"),
        (["latest"], "malformed torch version 'latest'"),
        (["2.14.1", "--torchvision", "0.28.0"], "torchvision 0.28.0 does not go with torch 2.14.1"),
    ],
)
def test_bump_bad_inputs(project, args, text):
    assert text in one_line_error(cli("torch", "bump", *args, "--project", str(project)))


def test_bump_project_without_pins(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert "no torch/torchvision/torchaudio == pins" in one_line_error(
        cli("torch", "bump", "2.14.0", "--project", str(tmp_path)))
