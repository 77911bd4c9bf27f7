"""Detection against this machine's real nvcc, torch and tools (skipped where absent).

Expected values are never written down: they come from asking the real thing another
way (nvcc's own --version, ``import torch`` in a subprocess, the ELF header of the
binary we resolved to).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools.detect import DetectOptions, detect_all
from buildtools.versions import version_tuple
from buildtools.detect.nvcc import DEFAULT_NVCC, find_nvcc
from buildtools.detect.python import probe_python
from buildtools.detect.torch import torch_facts

pytestmark = pytest.mark.integration


def _nvcc_or_skip():
    facts, notes = find_nvcc(None, os.environ)
    if facts is None:
        pytest.skip("no nvcc on this machine: " + "; ".join(notes))
    return facts


def _torch_dir_or_skip() -> Path:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"torch is not installed in {sys.executable}")
    return Path(list(spec.submodule_search_locations)[0])


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x7fELF"


def _nvcc_release(nvcc: Path) -> str:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("release ", 1)[1].split(",", 1)[0]


def test_real_nvcc_resolves_to_the_toolkit_binary():
    facts = _nvcc_or_skip()
    # Whatever was found (this machine: a wrapper script in /usr/local/bin), the result is
    # the compiler binary itself inside a toolkit root that has the CUDA headers.
    assert _is_elf(facts.path), f"{facts.path} is not the nvcc binary"
    assert facts.path == facts.root / "bin" / "nvcc"
    assert (facts.root / "include" / "cuda_runtime.h").is_file() or any(
        facts.root.glob("targets/*/include/cuda_runtime.h")
    )
    assert facts.root == Path(os.path.realpath(facts.root))  # "bin/.." and symlinks resolved
    assert facts.version == _nvcc_release(facts.found_as)
    assert facts.archs and all(version_tuple(a) for a in facts.archs)
    if not _is_elf(Path(os.path.realpath(facts.found_as))):
        assert f"wrapper {facts.found_as}, resolved by nvcc -dryrun" in facts.source


def test_our_own_wrapper_and_symlink_with_spaces_resolve_to_the_same_toolkit(tmp_path):
    real = _nvcc_or_skip()
    wrapper = tmp_path / "my wrapper dir" / "nvcc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{real.path}" "$@"\n')
    wrapper.chmod(0o755)
    link = tmp_path / "link dir" / "nvcc"
    link.parent.mkdir()
    link.symlink_to(real.path)
    for path, kind in ((wrapper, "wrapper"), (link, "symlink")):
        facts, _ = find_nvcc(path, os.environ)
        assert (facts.path, facts.root, facts.version, facts.archs) == (real.path, real.root, real.version, real.archs)
        assert facts.found_as == path and f"--nvcc {kind} {path}" in facts.source


def test_default_toolkit_symlink_resolves_too():
    if not DEFAULT_NVCC.is_file():
        pytest.skip(f"no {DEFAULT_NVCC}")
    # No nvcc on this PATH, but the host compiler that nvcc -dryrun looks for.
    path = os.pathsep.join(p for p in ("/usr/bin", "/bin") if not (Path(p) / "nvcc").exists())
    facts, _ = find_nvcc(None, {"PATH": path})
    assert facts is not None and facts.found_as == DEFAULT_NVCC
    assert facts.root == Path(os.path.realpath(DEFAULT_NVCC.parent.parent))


def test_torch_facts_match_what_importing_torch_says():
    torch_dir = _torch_dir_or_skip()
    facts, _ = torch_facts(torch_dir, Path(sys.executable))
    code = (
        "import json, torch, torch.utils\n"
        "abi = getattr(torch._C, '_GLIBCXX_USE_CXX11_ABI', None)\n"
        "print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, 'hip': torch.version.hip,"
        " 'prefix': torch.utils.cmake_prefix_path, 'abi': abi, 'root': torch.__path__[0]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    truth = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts.version == str(truth["version"])
    assert (facts.cuda, facts.hip) == (truth["cuda"], truth["hip"])
    assert facts.cmake_prefix == Path(truth["prefix"]) and facts.root == Path(truth["root"])
    if truth["abi"] is not None and facts.cxx11_abi is not None:
        assert facts.cxx11_abi == bool(truth["abi"])


def test_detect_all_on_this_machine():
    facts = detect_all(DetectOptions())
    assert facts.python.executable == Path(sys.executable)
    assert 1 <= facts.cpus.usable <= (os.cpu_count() or 1)
    assert facts.memory.available_bytes > 0
    if facts.cmake is not None:
        assert version_tuple(facts.cmake.version) >= (3, 26) and os.access(facts.cmake.path, os.X_OK)
        reported = subprocess.run([str(facts.cmake.path), "--version"], capture_output=True, text=True).stdout
        assert facts.cmake.version in reported
    if facts.torch is not None and facts.torch.cuda and facts.nvcc is not None:
        assert facts.nvcc is not None and facts.torch.cuda is not None  # a CUDA build is possible
        # The headers torch's CUDA headers need are in the toolkit or in the pip dirs.
        dirs = [facts.nvcc.root / "include", *facts.nvcc.root.glob("targets/*/include"), *facts.cuda_extra_includes]
        assert any((d / "cusparse.h").is_file() for d in dirs), dirs
    json.dumps([facts.notes])


def test_another_real_interpreter_by_path():
    base = Path(getattr(sys, "_base_executable", "") or "")
    if not base.is_file() or os.path.abspath(base) == os.path.abspath(sys.executable):
        pytest.skip("no second interpreter (not running in a venv)")
    env = probe_python(base, os.environ)
    assert env.facts.source == "--python" and env.facts.executable == base
    out = subprocess.run([str(base), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], capture_output=True, text=True)
    assert env.facts.version == out.stdout.strip()
    has_torch = subprocess.run(
        [str(base), "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"]
    ).returncode == 0
    assert (env.torch_dir is not None) == has_torch


def test_running_interpreter_named_explicitly_is_not_a_subprocess():
    env = probe_python(Path(sys.executable), os.environ)
    assert env.facts.source == "--python (the running interpreter)"
    assert env.facts.executable == Path(sys.executable)
    spec = importlib.util.find_spec("torch")
    assert (env.torch_dir is not None) == (spec is not None)
