"""The written presets drive real cmake/ninja/nvcc: schema, --list-presets, and a configure+build+install
of tests/fixtures/tiny_project (one .cpp, one torch-free .cu, one arch) from a directory with spaces,
with neither cmake's nor ninja's directory on PATH."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "tiny_project"
SHIM = ROOT / "tools" / "generate_presets.py"

pytestmark = pytest.mark.integration
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from test_cli_presets import NVCC_BIN, clean_env, make_venv, venv_site  # noqa: E402


def generate(project: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, str(SHIM), "--source-dir", str(project), "--json", *args],
                            capture_output=True, text=True, env=clean_env(), stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cmake_or_skip(data: dict) -> Path:
    cmake = data["facts"]["cmake"]
    if not cmake or not data["facts"]["ninja"]:
        pytest.skip("needs cmake >= 3.26 and ninja")
    return Path(cmake["path"])


def bare_env() -> dict[str, str]:
    """No venv on PATH: the presets must name ninja, nvcc and the launcher themselves."""
    env = {k: v for k, v in clean_env().items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = "/usr/bin:/bin"
    return env


def run(argv: list, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, env=bare_env(),
                            timeout=600)
    assert result.returncode == 0, f"{argv}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture
def project(tmp_path):
    dest = tmp_path / "tiny project with spaces"
    shutil.copytree(FIXTURE, dest)
    return dest


def test_written_file_passes_the_schema_and_list_presets(project):
    jsonschema = pytest.importorskip("jsonschema")
    data = generate(project)
    cmake = cmake_or_skip(data)
    schema_files = sorted(cmake.parent.parent.glob("share/cmake-*/Help/manual/presets/schema.json"))
    assert schema_files, f"no presets schema next to {cmake}"
    schema = json.loads(schema_files[-1].read_text())
    written = json.loads((project / "CMakeUserPresets.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(written)
    listed = run([cmake, "--list-presets=all"], project).stdout
    for kind in ("configure", "build", "workflow"):
        assert f"Available {kind} presets:" in listed
    for name in data["presets"]:
        assert f'"{name}"' in listed
    assert '"kernloop-base"' not in listed  # hidden


def _ninja_pools(build_dir: Path) -> tuple[str, str]:
    text = (build_dir / "build.ninja").read_text()
    rules = (build_dir / "CMakeFiles" / "rules.ninja").read_text()
    return text, rules


@pytest.mark.skipif(NVCC_BIN is None, reason="needs an nvcc")
def test_cuda_presets_configure_build_and_install_the_fixture(project):
    data = generate(project, "--arch", "8.0", "--nvcc-threads", "1")
    cmake = cmake_or_skip(data)
    assert data["plan"]["platform"]["value"] == "cuda"
    run([cmake, "--workflow", "--preset", "release"], project)

    build_dir = project / "cmake-build-release"
    cache = (build_dir / "CMakeCache.txt").read_text()
    assert "CMAKE_BUILD_TYPE:STRING=Release" in cache
    assert f"CMAKE_CUDA_COMPILER:STRING={NVCC_BIN}" in cache or f"CMAKE_CUDA_COMPILER:FILEPATH={NVCC_BIN}" in cache
    # installed into the source tree (CMAKE_INSTALL_PREFIX=${sourceDir})
    assert (project / "tiny_pkg" / "libtiny_cpu.so").is_file()
    cuda_lib = project / "tiny_pkg" / "libtiny_cuda.so"
    assert cuda_lib.is_file()
    # the .cu compiled by the real nvcc for exactly the planned arch (SASS only), with the planned threads
    commands = json.loads((build_dir / "compile_commands.json").read_text())
    cu = [c["command"] for c in commands if c["file"].endswith("scale.cu")]
    assert len(cu) == 1 and cu[0].startswith(str(NVCC_BIN))
    assert "sm_80" in cu[0] and "--threads=1" in cu[0]
    assert not [arch for arch in ("sm_75", "sm_86", "sm_90", "sm_100", "sm_120", "compute_80]") if arch in cu[0]]
    # the job pools are assigned, not only defined, and the launcher wraps every language
    jobs, link = data["plan"]["jobs"]["value"], data["plan"]["link_jobs"]["value"]
    build_ninja, rules = _ninja_pools(build_dir)
    assert f"pool compile\n  depth = {jobs}" in rules and f"pool link\n  depth = {link}" in rules
    assert "pool = compile" in build_ninja and "pool = link" in build_ninja
    launcher = data["plan"]["launcher"]["value"]
    if launcher:
        assert launcher["path"] in build_ninja or launcher["path"] in rules
        assert "CUDA" in launcher["languages"]


def test_cpu_only_presets_build_without_cuda(project, tmp_path):
    python = make_venv(tmp_path / "cpu venv")
    torch_dir = venv_site(python) / "torch"
    (torch_dir / "share" / "cmake" / "Torch").mkdir(parents=True)
    (torch_dir / "__init__.py").write_text("")
    (torch_dir / "version.py").write_text("__version__ = '2.13.0+cpu'\ncuda = None\nhip = None\n")
    (torch_dir / "share" / "cmake" / "Torch" / "TorchConfig.cmake").write_text("# fake\n")
    data = generate(project, "--python", str(python))
    cmake = cmake_or_skip(data)
    assert data["plan"]["platform"]["value"] == "cpu"
    run([cmake, "--workflow", "--preset", "debug"], project)
    cache = (project / "cmake-build-debug" / "CMakeCache.txt").read_text()
    assert "KERNLOOP_ENABLE_CUDA:UNINITIALIZED=OFF" in cache or "KERNLOOP_ENABLE_CUDA:BOOL=OFF" in cache
    assert "CMAKE_CUDA_COMPILER" not in cache
    assert (project / "tiny_pkg" / "libtiny_cpu.so").is_file()
    assert not (project / "tiny_pkg" / "libtiny_cuda.so").exists()
