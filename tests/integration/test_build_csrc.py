"""The kernels' CMake build, for real: the presets workflow on a copy of the tree (one arch, the
session fixture in tests/conftest.py), what it compiled and installed, `import kernloop` running
every op in a fresh interpreter, the CPU-only build, the configure-time decisions, and the arch
list functions of cmake/archs.cmake (through `cmake -P`)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
OPS = ("rms_norm", "fused_add_rms_norm", "silu_and_mul", "rotary_embedding", "topk_softmax",
       "moe_align_block_size", "moe_sum")

# Runs every op through the package's wrappers on small CPU inputs and checks each against an
# obvious property; prints one JSON line.
SMOKE = textwrap.dedent("""
    import json, torch, kernloop
    x = torch.randn(3, 16); w = torch.ones(16)
    y = kernloop.rms_norm(x, w, 1e-6)
    assert torch.allclose(y.pow(2).mean(-1), torch.ones(3), atol=1e-4)
    r = torch.zeros(3, 16); kernloop.fused_add_rms_norm(x.clone(), r, w, 1e-6)
    assert torch.equal(r, x)
    assert torch.allclose(kernloop.silu_and_mul(torch.cat([x, torch.ones(3, 16)], -1)), torch.nn.functional.silu(x))
    q = torch.randn(2, 8); k = q.clone(); cache = torch.cat([torch.ones(4, 4), torch.zeros(4, 4)], -1)
    kernloop.rotary_embedding(torch.tensor([0, 3]), q, k, 8, cache, True)
    assert torch.equal(q, k)
    weights, ids, _ = kernloop.topk_softmax(torch.tensor([[0.0, 5.0, 1.0]]), 2)
    assert ids.tolist() == [[1, 2]] and 0.9 < weights.sum() <= 1
    sorted_ids, expert_ids, total = kernloop.moe_align_block_size(torch.tensor([[1, 0]], dtype=torch.int32), 4, 2)
    assert int(total) == 8 and expert_ids[:2].tolist() == [0, 1]
    assert torch.equal(kernloop.moe_sum(torch.ones(2, 3, 5)), torch.full((2, 5), 3.0))
    print(json.dumps({"ops": list(kernloop.available_ops()), "cuda": kernloop.cuda_enabled(),
                      "file": kernloop.__file__}))
""")


def python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env=python_env(), timeout=300, stdin=subprocess.DEVNULL)


def flat(text: str) -> str:
    """CMake wraps its messages; compare them with whitespace collapsed."""
    return " ".join(text.split())


def cmake_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TORCH_CUDA_ARCH_LIST", None)
    env.update(CCACHE_BASEDIR=str(root), CCACHE_NOHASHDIR="true")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def cmake(build, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    cwd = build.root
    result = subprocess.run([build.cmake, *args], cwd=cwd, capture_output=True, text=True,
                            env=cmake_env(cwd), timeout=1800, stdin=subprocess.DEVNULL)
    if check:
        assert result.returncode == 0, f"cmake {shlex.join(args)}\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.fixture(scope="module")
def built(kernloop_build):
    if kernloop_build.build_dir is None:
        pytest.skip("KERNLOOP_TEST_INPLACE=1: no build in this session")
    return kernloop_build


@pytest.fixture(scope="module")
def compile_commands(built) -> list[dict]:
    return json.loads((built.build_dir / "compile_commands.json").read_text())


def cuda_on(build) -> bool:
    return "kernloop: CUDA kernels ON" in build.log


# --- the preset workflow --------------------------------------------------------------------------

def test_workflow_installs_both_modules_into_the_package(built):
    assert (built.root / "CMakeUserPresets.json").is_file()
    assert built.extensions == ("_C", "_moe_C")
    for name in built.extensions:
        assert built.module_path(name).is_file(), f"{name}.abi3.so not installed into {built.root / 'kernloop'}"
    assert not list((built.root / "kernloop").glob("*.cpython-*.so")), "modules must use the stable ABI"


def test_configure_says_once_whether_cuda_is_built(built):
    lines = re.findall(r"kernloop: (CUDA kernels ON|CPU-only build of the same ops)", built.log)
    assert len(lines) == 1, built.log[-3000:]
    has_nvcc = '"CMAKE_CUDA_COMPILER"' in (built.root / "CMakeUserPresets.json").read_text()
    import torch

    assert cuda_on(built) == bool(has_nvcc and torch.version.cuda)


def test_every_tu_is_cxx20_and_cuda_tus_get_only_the_asked_arch(built, compile_commands):
    sources = {Path(entry["file"]).name: entry["command"] for entry in compile_commands}
    assert {"ops.cpp", "torch_bindings.cpp", "moe_ops.cpp", "layernorm.cpp"} <= set(sources)
    for name, command in sources.items():
        assert "c++20" in command, f"{name}: {command}"
    cu = {name: command for name, command in sources.items() if name.endswith(".cu")}
    if not cuda_on(built):
        assert cu == {}
        return
    assert set(cu) == {"layernorm_kernels.cu", "activation_kernels.cu", "pos_encoding_kernels.cu",
                       "topk_softmax_kernels.cu", "moe_align_sum_kernels.cu"}
    sm = built.arch.replace(".", "")
    for name, command in cu.items():
        assert re.findall(r"-gencode=\S+", command) == [f"-gencode=arch=compute_{sm},code=sm_{sm}"], name
        assert "--threads=" in command, name
        # torch's headers are on the C++ include path only: a .cu cannot include them
        assert "torch/include" not in command, name


def test_compile_and_link_jobs_run_in_the_presets_pools(built):
    presets = json.loads((built.root / "CMakeUserPresets.json").read_text())
    cache = next(p for p in presets["configurePresets"] if p["name"] == "kernloop-base")["cacheVariables"]
    if "CMAKE_JOB_POOL_COMPILE" not in cache:
        pytest.skip("the presets define no job pools on this machine")
    ninja = (built.build_dir / "build.ninja").read_text()
    object_builds = re.findall(r"^build \S+\.(?:cpp|cu)\.o: .*\n((?:  .*\n)*)", ninja, re.MULTILINE)
    assert object_builds and all(f"pool = {cache['CMAKE_JOB_POOL_COMPILE']}" in b for b in object_builds)
    links = re.findall(r"^build \S+\.abi3\.so: .*\n((?:  .*\n)*)", ninja, re.MULTILINE)
    assert len(links) == 2 and all(f"pool = {cache['CMAKE_JOB_POOL_LINK']}" in b for b in links)


def test_import_kernloop_runs_every_op(built):
    result = run_python(SMOKE, built.root)
    assert result.returncode == 0, result.stderr[-4000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["ops"] == list(OPS)
    assert Path(info["file"]).resolve().parent == (built.root / "kernloop").resolve()
    assert info["cuda"] == cuda_on(built)


# --- the CPU-only build ---------------------------------------------------------------------------

def test_cpu_only_build_configures_builds_and_runs(built, tmp_path):
    build_dir = tmp_path / "build-cpu"
    prefix = tmp_path / "prefix"
    configure = cmake(built, ["--preset", "release", "-B", str(build_dir), "-DKERNLOOP_ENABLE_CUDA=OFF",
                              f"-DCMAKE_INSTALL_PREFIX={prefix}"])
    assert "kernloop: CPU-only build of the same ops (CUDA off: KERNLOOP_ENABLE_CUDA=OFF" in configure.stdout
    commands = json.loads((build_dir / "compile_commands.json").read_text())
    assert commands and not [c for c in commands if c["file"].endswith(".cu")]
    cmake(built, ["--build", str(build_dir), "--target", "install", "-j", "2"])
    for py in (built.root / "kernloop").glob("*.py"):
        shutil.copy2(py, prefix / "kernloop" / py.name)
    result = run_python(SMOKE, prefix)
    assert result.returncode == 0, result.stderr[-4000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["ops"] == list(OPS) and info["cuda"] is False


# --- configure-time decisions (configure only, no build) ------------------------------------------

def test_auto_mode_without_nvcc_is_a_cpu_build_and_on_mode_fails(built, tmp_path):
    missing = tmp_path / "no-toolkit" / "nvcc"
    auto = cmake(built, ["--preset", "release", "-B", str(tmp_path / "auto"), "-DKERNLOOP_ENABLE_CUDA=AUTO",
                         f"-DCMAKE_CUDA_COMPILER={missing}"])
    assert f"CPU-only build of the same ops (CUDA off: CMAKE_CUDA_COMPILER={missing} does not exist" in auto.stdout
    on = cmake(built, ["--preset", "release", "-B", str(tmp_path / "on"), "-DKERNLOOP_ENABLE_CUDA=ON",
                       f"-DCMAKE_CUDA_COMPILER={missing}"], check=False)
    assert on.returncode != 0
    assert f"KERNLOOP_ENABLE_CUDA=ON but CMAKE_CUDA_COMPILER={missing} does not exist" in flat(on.stderr)
    assert "set KERNLOOP_ENABLE_CUDA=OFF" in flat(on.stderr)


def test_an_arch_nvcc_cannot_build_is_a_configure_error(built, tmp_path):
    if not cuda_on(built):
        pytest.skip("CUDA is off in this build")
    result = cmake(built, ["--preset", "release", "-B", str(tmp_path / "b"), "-DTORCH_CUDA_ARCH_LIST=6.0"],
                   check=False)
    assert result.returncode != 0
    assert "none of TORCH_CUDA_ARCH_LIST=6.0 can be built" in flat(result.stderr)


def test_missing_python_is_a_configure_error(built, tmp_path):
    result = cmake(built, ["--preset", "release", "-B", str(tmp_path / "b"),
                           f"-DKERNLOOP_PYTHON_EXECUTABLE={tmp_path / 'nope' / 'python'}"], check=False)
    assert result.returncode != 0
    assert f"KERNLOOP_PYTHON_EXECUTABLE={tmp_path / 'nope' / 'python'} does not exist" in flat(result.stderr)


# --- the unbuilt / broken package -----------------------------------------------------------------

@pytest.fixture
def bare_package(tmp_path) -> Path:
    (tmp_path / "kernloop").mkdir()
    for py in (REPO / "kernloop").glob("*.py"):
        shutil.copy2(py, tmp_path / "kernloop" / py.name)
    return tmp_path


def test_unbuilt_package_import_error_says_how_to_build(bare_package):
    result = run_python("import kernloop", bare_package)
    assert result.returncode != 0
    assert "ImportError: kernloop's compiled ops are not built" in result.stderr
    assert ("python tools/generate_presets.py --force-overwrite && cmake --preset release && "
            "cmake --build --preset release --target install") in result.stderr
    assert "bash tools/setup.sh" in result.stderr


def test_broken_module_import_error_says_to_rebuild(bare_package):
    (bare_package / "kernloop" / "_C.abi3.so").write_bytes(b"not an ELF file")
    result = run_python("import kernloop", bare_package)
    assert result.returncode != 0
    assert "kernloop's compiled module _C failed to load" in result.stderr
    assert "cmake --build --preset release --target install" in result.stderr


# --- cmake/archs.cmake through `cmake -P` (no compiler) -------------------------------------------

ARCHS_SCRIPT = """
cmake_minimum_required(VERSION 3.26)  # the project's minimum: same policies as a configure
include("${ARCHS_CMAKE}")
if(FN STREQUAL "intersect")
  kernloop_cuda_archs_loose_intersection(out "${SRC}" "${TGT}")
elseif(FN STREQUAL "parse")
  kernloop_parse_arch_list(out "${SPEC}")
else()
  kernloop_gencode_flags(out "${SPEC}")
endif()
message("RESULT=${out}")
"""


def archs_cmake(tmp_path: Path, **defs: str) -> subprocess.CompletedProcess:
    script = tmp_path / "archs_probe.cmake"
    script.write_text(ARCHS_SCRIPT)
    args = [f"-DARCHS_CMAKE={REPO / 'cmake' / 'archs.cmake'}", *(f"-D{k}={v}" for k, v in defs.items())]
    cmake_exe = Path(sys.executable).parent / "cmake"
    exe = str(cmake_exe) if cmake_exe.exists() else shutil.which("cmake")
    if exe is None:
        pytest.fail("cmake not found -- run tools/setup.sh")
    return subprocess.run([exe, *args, "-P", str(script)], capture_output=True, text=True, timeout=60)


def archs_result(tmp_path: Path, **defs: str) -> str:
    result = archs_cmake(tmp_path, **defs)
    assert result.returncode == 0, result.stderr
    return re.search(r"RESULT=(.*)", result.stderr).group(1)


GENERIC = "7.5;8.0;8.6;8.9;9.0;10.0;12.0"


@pytest.mark.parametrize("src,tgt,expected", [
    (GENERIC, "9.0", "9.0"),
    (GENERIC, "8.9;9.0+PTX", "8.9;9.0+PTX"),
    ("8.0;8.6;9.0", "8.7", "8.6"),               # newest same-major arch that is not newer
    ("8.0;9.0", "9.0a", "9.0"),                  # generic code serves an arch-specific request
    ("9.0a", "9.0", ""),                         # arch-specific code only for the exact arch
    ("9.0;9.0a", "9.0a", "9.0a"),
    ("8.0;9.0;10.0", "12.0", ""),                # SASS never crosses a major version
    (GENERIC, "9.0;9.0+PTX", "9.0+PTX"),
    ("7.5;8.0", "7.0", ""),
    (GENERIC, "", ""),
])
def test_loose_intersection(tmp_path, src, tgt, expected):
    assert archs_result(tmp_path, FN="intersect", SRC=src, TGT=tgt) == expected


@pytest.mark.parametrize("spec,expected", [
    ("8.0 9.0+PTX", "8.0;9.0+PTX"), ("8.0;9.0", "8.0;9.0"), ("8.0,8.0, 9.0a", "8.0;9.0a"),
    ("Hopper", "9.0"), ("Ampere;8.9", "8.0;8.6;8.9"),
])
def test_parse_arch_list(tmp_path, spec, expected):
    assert archs_result(tmp_path, FN="parse", SPEC=spec) == expected


def test_parse_arch_list_names_a_bad_entry(tmp_path):
    result = archs_cmake(tmp_path, FN="parse", SPEC="8.0;sm_90")
    assert result.returncode != 0
    assert "TORCH_CUDA_ARCH_LIST entry 'sm_90' is not an arch" in flat(result.stderr)


def test_gencode_flags(tmp_path):
    assert archs_result(tmp_path, FN="gencode", SPEC="8.0;9.0a+PTX") == (
        "-gencode=arch=compute_80,code=sm_80;-gencode=arch=compute_90a,code=sm_90a;"
        "-gencode=arch=compute_90a,code=compute_90a")
