"""`python tools/generate_presets.py` end to end, as a user runs it: real detection, one bad input per test.

These run the real CLI in a subprocess (~0.3 s each); they need this environment's torch, and
the CUDA-specific ones an nvcc.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "tools" / "generate_presets.py"
OVERRIDE_VARS = ("MAX_JOBS", "NVCC_THREADS", "TORCH_CUDA_ARCH_LIST", "CMAKE_BUILD_TYPE", "CUDACXX",
                 "CMAKE_CUDA_COMPILER", "CUDA_HOME", "CUDA_PATH")


def _real_nvcc() -> Path | None:
    for candidate in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _elf_nvcc(found: Path | None) -> Path | None:
    """The nvcc binary itself (not a wrapper script), for building our own wrappers and links."""
    for candidate in (found, Path("/usr/local/cuda/bin/nvcc")):
        if candidate and os.path.isfile(candidate):
            real = Path(os.path.realpath(candidate))
            if real.read_bytes()[:4] == b"\x7fELF":
                return real
    return None


NVCC = _real_nvcc()
NVCC_BIN = _elf_nvcc(NVCC)
needs_nvcc = pytest.mark.skipif(NVCC_BIN is None, reason="needs an nvcc")
try:
    import importlib.util

    HAS_TORCH = importlib.util.find_spec("torch") is not None
except ImportError:  # pragma: no cover
    HAS_TORCH = False
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs torch in this Python")
pytestmark = needs_torch


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDE_VARS}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, module: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "buildtools", "presets"] if module else [sys.executable, str(SHIM)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env or clean_env(),
                          stdin=subprocess.DEVNULL, cwd=ROOT if module else None, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def cache_vars(path: Path) -> dict[str, str]:
    doc = json.loads(path.read_text())
    base = next(p for p in doc["configurePresets"] if p["name"] == "kernloop-base")
    return base["cacheVariables"]


@pytest.fixture
def project(tmp_path):
    """An empty project directory whose path has spaces."""
    d = tmp_path / "my project dir"
    d.mkdir()
    return d


def presets_file(project: Path) -> Path:
    return project / "CMakeUserPresets.json"


# -- the good path ---------------------------------------------------------------------------------
@needs_nvcc
def test_writes_presets_with_the_real_toolkit_and_assigned_pools(project):
    result = run_cli("--source-dir", str(project))
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"wrote {presets_file(project)} (presets: release, relwithdebinfo, debug)")
    assert summary.endswith("-- next: cmake --workflow --preset release")
    cv = cache_vars(presets_file(project))
    assert cv["CMAKE_CUDA_COMPILER"] == str(NVCC_BIN)  # the binary, not a wrapper or link
    assert Path(cv["CUDA_TOOLKIT_ROOT_DIR"]) / "bin" / "nvcc" == NVCC_BIN
    assert cv["CMAKE_JOB_POOL_COMPILE"] == "compile" and cv["CMAKE_JOB_POOL_LINK"] == "link"
    assert cv["CMAKE_JOB_POOLS"].startswith("compile=") and ";link=" in cv["CMAKE_JOB_POOLS"]
    assert cv["KERNLOOP_ENABLE_CUDA"] == "ON"
    assert cv["KERNLOOP_PYTHON_EXECUTABLE"] == sys.executable


def test_module_entry_point_matches_the_shim(project):
    a = run_cli("--source-dir", str(project), "--dry-run")
    b = run_cli("--source-dir", str(project), "--dry-run", module=True)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout
    assert not presets_file(project).exists()  # dry run
    assert a.stdout.strip().splitlines()[-1].startswith(f"dry run: would write {presets_file(project)}")


def test_print_plan_shows_sources_and_reasons(project):
    result = run_cli("--source-dir", str(project), "--print-plan", "--dry-run", "--jobs", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "facts:" in out and "  cores " in out and "[from: " in out
    assert "jobs=3: from --jobs (safe plan: " in out
    assert "link-jobs=1: min(jobs 3 / 2, RAM " in out
    assert not presets_file(project).exists()


def test_json_output(project):
    result = run_cli("--source-dir", str(project), "--json", "--build-type", "debug")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["file"] == str(presets_file(project)) and data["written"] is True
    assert data["presets"] == ["release", "relwithdebinfo", "debug"]
    assert data["plan"]["build_type"]["value"] == "Debug"
    assert data["facts"]["python"]["executable"] == sys.executable
    assert data["document"] == json.loads(presets_file(project).read_text())
    assert "next: cmake --workflow --preset debug" in result.stderr  # summary off stdout with --json


def test_env_overrides_and_malformed_env(project):
    ok = run_cli("--source-dir", str(project), "--json", "--dry-run", env=clean_env(MAX_JOBS="5"))
    assert json.loads(ok.stdout)["plan"]["jobs"]["value"] == 5
    flag = run_cli("--source-dir", str(project), "--json", "--dry-run", "--jobs", "4", env=clean_env(MAX_JOBS="5"))
    assert json.loads(flag.stdout)["plan"]["jobs"]["value"] == 4
    assert_one_line_error(run_cli("--source-dir", str(project), env=clean_env(MAX_JOBS="lots")), "MAX_JOBS")


# -- nvcc as the CLI sees it --------------------------------------------------------------------------
def test_missing_nvcc_flag(project):
    assert_one_line_error(run_cli("--source-dir", str(project), "--nvcc", str(project / "no" / "nvcc")),
                          "--nvcc", "no such file")
    assert not presets_file(project).exists()


@needs_nvcc
def test_wrapper_nvcc_resolves_to_the_real_toolkit(project, tmp_path):
    wrapper_dir = tmp_path / "wrapper bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec "{NVCC_BIN}" "$@"\n')
    wrapper.chmod(0o755)
    result = run_cli("--source-dir", str(project), "--nvcc", str(wrapper))
    assert result.returncode == 0, result.stderr
    cv = cache_vars(presets_file(project))
    assert cv["CMAKE_CUDA_COMPILER"] == str(NVCC_BIN)
    assert cv["CUDA_TOOLKIT_ROOT_DIR"] == str(NVCC_BIN.parent.parent)


@needs_nvcc
def test_symlinked_nvcc_resolves_to_the_real_toolkit(project, tmp_path):
    link_dir = tmp_path / "link bin"
    link_dir.mkdir()
    (link_dir / "nvcc").symlink_to(NVCC_BIN)
    result = run_cli("--source-dir", str(project), "--nvcc", str(link_dir / "nvcc"))
    assert result.returncode == 0, result.stderr
    cv = cache_vars(presets_file(project))
    assert cv["CMAKE_CUDA_COMPILER"] == str(NVCC_BIN)
    assert cv["CUDA_TOOLKIT_ROOT_DIR"] == str(NVCC_BIN.parent.parent)


def test_cuda_home_pointing_nowhere(project, tmp_path):
    result = run_cli("--source-dir", str(project), env=clean_env(CUDA_HOME=str(tmp_path / "nowhere")))
    assert_one_line_error(result, "CUDA_HOME", "nowhere")
    assert not presets_file(project).exists()


# -- torch as the CLI sees it ---------------------------------------------------------------------------
def make_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    return where / "bin" / "python"


def venv_site(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def test_torch_missing(project, tmp_path):
    python = make_venv(tmp_path / "venv without torch")
    result = run_cli("--source-dir", str(project), "--python", str(python))
    assert_one_line_error(result, "torch is not installed", "--python")
    assert not presets_file(project).exists()


def test_cpu_torch_gives_a_cpu_only_plan_said_in_one_line(project, tmp_path):
    # A CPU build of torch, as its installed files describe it (we do not install a second torch).
    python = make_venv(tmp_path / "cpu venv")
    torch_dir = venv_site(python) / "torch"
    (torch_dir / "share" / "cmake" / "Torch").mkdir(parents=True)
    (torch_dir / "__init__.py").write_text("")
    (torch_dir / "version.py").write_text("__version__ = '2.13.0+cpu'\ncuda = None\nhip = None\n")
    (torch_dir / "share" / "cmake" / "Torch" / "TorchConfig.cmake").write_text("# fake\n")
    result = run_cli("--source-dir", str(project), "--python", str(python))
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == ["note: CPU-only plan: torch 2.13.0+cpu is a CPU build"]
    cv = cache_vars(presets_file(project))
    assert cv["KERNLOOP_ENABLE_CUDA"] == "OFF"
    assert not [k for k in cv if "CUDA" in k and k != "KERNLOOP_ENABLE_CUDA"]
    assert cv["KERNLOOP_PYTHON_EXECUTABLE"] == str(python)


# -- an existing file -------------------------------------------------------------------------------------
USER_PRESETS = {
    "version": 6,
    "configurePresets": [{"name": "mine", "inherits": "kernloop-base", "binaryDir": "${sourceDir}/b-mine"}],
    "buildPresets": [{"name": "mine", "configurePreset": "mine"}],
}


def test_user_presets_are_kept_and_ours_need_force_overwrite_without_a_terminal(project):
    path = presets_file(project)
    path.write_text(json.dumps(USER_PRESETS, indent=2))
    first = run_cli("--source-dir", str(project))  # only the user's presets: no question needed
    assert first.returncode == 0, first.stderr
    assert "kept yours: mine" in first.stdout and f"backup: {path}.bak-" in first.stdout
    written = path.read_text()
    assert json.loads(written)["configurePresets"][0] == USER_PRESETS["configurePresets"][0]

    again = run_cli("--source-dir", str(project), "--jobs", "1")  # ours are there now
    assert_one_line_error(again, "already has kernloop's presets", "--force-overwrite")
    assert path.read_text() == written  # untouched

    forced = run_cli("--source-dir", str(project), "--jobs", "1", "--force-overwrite")
    assert forced.returncode == 0, forced.stderr
    doc = json.loads(path.read_text())
    assert {p["name"] for p in doc["configurePresets"]} >= {"mine", "kernloop-base", "release", "debug"}
    assert all(p["jobs"] == 1 for p in doc["buildPresets"] if p["name"] != "mine")
    backups = sorted(project.glob("CMakeUserPresets.json.bak-*"))
    assert len(backups) == 2 and backups[-1].read_text() == written

    same = run_cli("--source-dir", str(project), "--jobs", "1")  # nothing would change: no question
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip().splitlines()[-1].startswith(f"{path} is up to date (presets: ")
    assert len(list(project.glob("CMakeUserPresets.json.bak-*"))) == 2  # nothing new to back up


def test_invalid_json_is_named_with_its_line_and_left_alone(project):
    path = presets_file(project)
    broken = '{\n  "version": 6,\n  "configurePresets": [\n    {"name": "mine",}\n  ]\n}\n'
    path.write_text(broken)
    line = assert_one_line_error(run_cli("--source-dir", str(project)), f"{path}:4:", "--force-overwrite")
    assert "invalid JSON" in line
    assert path.read_text() == broken and not list(project.glob("*.bak-*"))

    forced = run_cli("--source-dir", str(project), "--force-overwrite")
    assert forced.returncode == 0, forced.stderr
    backups = list(project.glob("CMakeUserPresets.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == broken
    assert json.loads(path.read_text())["version"] == 6
    assert "was not valid presets JSON; replaced" in forced.stderr


def test_read_only_directory(project):
    from test_presets_fileio import _make_read_only

    undo = _make_read_only(project)
    try:
        result = run_cli("--source-dir", str(project))
    finally:
        undo()
    assert_one_line_error(result, str(presets_file(project)))
    assert not presets_file(project).exists()


def test_bad_flag_values_never_give_a_traceback(project):
    assert_one_line_error(run_cli("--source-dir", str(project), "--jobs", "0"), "--jobs")
    assert_one_line_error(run_cli("--source-dir", str(project), "--nvcc-threads", "x"), "--nvcc-threads")
    assert_one_line_error(run_cli("--source-dir", str(project), "--build-type", "Fast"), "--build-type")
    assert_one_line_error(run_cli("--source-dir", str(project / "missing")), "--source-dir")
