"""The target Python, torch read from its files (never imported), pip CUDA headers."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from buildtools.detect.cuda_headers import pip_cuda_include_dirs
from buildtools.detect.python import probe_python, python_notes
from buildtools.detect.torch import read_cxx11_abi, read_version_py, torch_facts
from buildtools.errors import KernloopError
from tests.unit._detect_fakes import env_with_path, fake_python, fake_torch, write_script

# -- torch from files -----------------------------------------------------------------


def test_cuda_torch_facts_come_from_version_py_and_share_cmake(tmp_path):
    torch_dir = fake_torch(tmp_path / "site-packages")  # its __init__ raises if imported
    facts, notes = torch_facts(torch_dir, Path("/venv/bin/python"))
    assert (facts.version, facts.cuda, facts.hip) == ("2.14.1+cu130", "13.0", None)
    assert facts.root == torch_dir
    assert facts.cmake_prefix == torch_dir / "share" / "cmake"
    assert facts.cxx11_abi is (True if sys.platform.startswith("linux") else None)
    assert "not imported" in facts.source and str(torch_dir / "version.py") in facts.source
    assert notes == []


def test_cpu_torch_has_no_cuda_and_says_so(tmp_path):
    torch_dir = fake_torch(tmp_path / "site-packages", version="2.13.0+cpu", cuda=None)
    facts, notes = torch_facts(torch_dir, Path("/venv/bin/python"))
    assert facts.cuda is None and facts.hip is None and facts.version == "2.13.0+cpu"
    assert len(notes) == 1 and "CPU-only" in notes[0] and "/venv/bin/python" in notes[0]


def test_rocm_torch_reports_hip(tmp_path):
    torch_dir = fake_torch(tmp_path / "site-packages", version="2.14.1+rocm7.0", cuda=None, hip="7.0.51831")
    facts, notes = torch_facts(torch_dir, Path("python"))
    assert facts.hip == "7.0.51831" and facts.cuda is None
    assert not any("CPU-only" in n for n in notes)


@pytest.mark.parametrize("flag, expected", [("0", False), ("1", True)])
def test_explicit_abi_flag_in_torch_config_wins(tmp_path, flag, expected):
    torch_dir = fake_torch(tmp_path / "site-packages", version="2.5.1+cu124", cuda="12.4", abi_flag=flag)
    facts, _ = torch_facts(torch_dir, Path("python"))
    assert facts.cxx11_abi is expected
    assert f"_GLIBCXX_USE_CXX11_ABI={flag}" in facts.source


def test_abi_without_flag_depends_on_platform(tmp_path):
    config = fake_torch(tmp_path / "s").joinpath("share", "cmake", "Torch", "TorchConfig.cmake")
    assert read_cxx11_abi(config, "linux")[0] is True
    assert read_cxx11_abi(config, "darwin")[0] is None
    assert read_cxx11_abi(tmp_path / "missing.cmake", "linux")[0] is None


def test_torch_without_cmake_files_is_kept_with_a_note(tmp_path):
    torch_dir = fake_torch(tmp_path / "site-packages", cmake=False)
    facts, notes = torch_facts(torch_dir, Path("python"))
    assert facts is not None and facts.cxx11_abi is None
    assert any("TorchConfig.cmake" in n for n in notes)


def test_torch_missing_is_none_with_a_note_naming_the_python():
    facts, notes = torch_facts(None, Path("/opt/py 3/bin/python"))
    assert facts is None
    assert len(notes) == 1 and "torch is not installed in /opt/py 3/bin/python" in notes[0]


@pytest.mark.parametrize("content", [None, "__version__ = (", "cuda = '13.0'\n"])
def test_broken_torch_install_is_none_with_a_note(tmp_path, content):
    torch_dir = tmp_path / "torch"
    torch_dir.mkdir()
    if content is not None:
        (torch_dir / "version.py").write_text(content)
    facts, notes = torch_facts(torch_dir, Path("python"))
    assert facts is None and len(notes) == 1 and "reinstall torch" in notes[0]


def test_read_version_py_takes_literals_only(tmp_path):
    path = tmp_path / "version.py"
    path.write_text("import os\n__version__ = '1.0'\ncuda: str = '12.4'\ngit = os.getcwd()\nx = y = 3\n")
    assert read_version_py(path) == {"__version__": "1.0", "cuda": "12.4", "x": 3, "y": 3}


# -- the target Python --------------------------------------------------------------------


def test_running_interpreter_is_the_default():
    env = probe_python(None, {"PATH": ""})
    assert env.facts.executable == Path(sys.executable)
    assert env.facts.version == "%d.%d.%d" % sys.version_info[:3]
    assert env.facts.source.startswith("sys.executable")
    assert env.bin_dir == Path(sys.executable).parent  # not symlink-resolved: a venv's bin


def test_other_python_is_probed_in_a_subprocess_without_importing_torch(tmp_path):
    site = tmp_path / "other env" / "site-packages"
    torch_dir = fake_torch(site, version="2.13.0+cpu", cuda=None)
    python = fake_python(tmp_path / "other env" / "bin" / "python", site)
    env = probe_python(python, env_with_path())
    assert env.facts.executable == python and env.facts.source == "--python"
    assert env.torch_dir == torch_dir  # found by find_spec; the fake's __init__ would raise
    assert site in env.site_dirs
    assert env.bin_dir == python.parent


def test_other_python_without_torch(tmp_path):
    python = fake_python(tmp_path / "bin" / "python", None)
    env = probe_python(python, env_with_path())
    assert env.torch_dir is None
    facts, notes = torch_facts(env.torch_dir, env.facts.executable)
    assert facts is None and str(python) in notes[0]


def test_python_by_bare_name_is_looked_up_on_path(tmp_path):
    python = fake_python(tmp_path / "bin dir" / "python3.99", None)
    env = probe_python(Path("python3.99"), env_with_path(python.parent))
    assert env.facts.executable == python


@pytest.mark.parametrize("kind", ["missing", "directory", "not-python", "not-executable", "not-on-path"])
def test_bad_python_is_one_line_naming_the_flag(tmp_path, kind):
    path = tmp_path / "python"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-python":
        write_script(path, "echo 'this is not python'\n")
    elif kind == "not-executable":
        path.write_text("print('hi')\n")
    elif kind == "not-on-path":
        path = Path("python-does-not-exist")
    with pytest.raises(KernloopError) as err:
        probe_python(path, env_with_path(tmp_path / "empty"))
    line = err.value.one_line()
    assert "--python" in line and "\n" not in line


def test_old_python_is_noted():
    from buildtools.detect.python import PythonEnv
    from buildtools.model import PythonFacts

    old = PythonEnv(PythonFacts(Path("/usr/bin/python3.8"), "3.8.10", "--python"), (), None)
    assert python_notes(old) and "3.10" in python_notes(old)[0]
    new = PythonEnv(PythonFacts(Path("/usr/bin/python3.12"), "3.12.1", "--python"), (), None)
    assert python_notes(new) == []


# -- pip CUDA headers -------------------------------------------------------------------


def _headers(site: Path, *names: str) -> None:
    for name in names:
        (site / "nvidia" / name / "include").mkdir(parents=True)
    (site / "nvidia" / "no_headers").mkdir(parents=True, exist_ok=True)


def test_versioned_dirs_come_first_then_per_library_dirs(tmp_path):
    site = tmp_path / "site packages"
    _headers(site, "cu13", "cudnn", "nccl")
    dirs = pip_cuda_include_dirs([site], cuda_major=13)
    assert dirs == (
        site / "nvidia" / "cu13" / "include",
        site / "nvidia" / "cudnn" / "include",
        site / "nvidia" / "nccl" / "include",
    )


def test_other_cuda_major_is_left_out_and_duplicates_once(tmp_path):
    site = tmp_path / "site-packages"
    _headers(site, "cu12", "cu13", "cusparse")
    link = tmp_path / "link-site"
    link.symlink_to(site, target_is_directory=True)
    dirs = pip_cuda_include_dirs([site, link, tmp_path / "missing"], cuda_major=12)
    assert dirs == (site / "nvidia" / "cu12" / "include", site / "nvidia" / "cusparse" / "include")
    assert len(pip_cuda_include_dirs([site], None)) == 3


def test_no_nvidia_packages_no_dirs(tmp_path):
    assert pip_cuda_include_dirs([tmp_path], 13) == ()
