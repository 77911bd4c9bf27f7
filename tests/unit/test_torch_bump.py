"""``torch bump``: pins move, everything else in the files stays byte for byte."""
from __future__ import annotations

import os
import sys

import pytest

from buildtools.errors import KernloopError
from buildtools.torchenv.bump import collect_files, plan_bump, resolve_targets, write_plan
from buildtools.torchenv.matrix import load_matrix

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TORCH_CUDA = """\
# The one place torch is pinned for the default (CUDA 13.0) set-up.
--extra-index-url https://download.pytorch.org/whl/cu130
torch==2.14.1  # keep in step with cmake/torch.cmake
torchvision == 0.29.1 ; platform_machine == "x86_64"
torchaudio==2.11.0
TorchVision[extra]==0.29.1; python_version >= "3.10"   # other spelling, same package
torch-tensorrt==2.14.0
"""

TORCH_CPU = """\
# CPU-only torch (no CUDA kernels are built against it).
torch==2.14.1+cpu ; sys_platform == "linux"
torchvision==0.29.1+cpu
torch>=2.7,<3  # a range: not a pin
"""

PYPROJECT = """\
[build-system]
requires = ["scikit-build-core>=0.10", "torch==2.14.1"]  # build against this torch

[project]
name = "demo"
dependencies = [
    "torch==2.14.1; platform_system != 'Darwin'",
    'torchvision==0.29.1',
    # "torch==2.14.1" in a comment stays as it is
    "numpy>=2",
]

[project.optional-dependencies]
cpu = ["torch==2.14.1+cpu", "torchaudio>=2.11"]

[tool.demo]
note = "torch==2.14.1 is also what the docs say"
"""


@pytest.fixture(scope="module")
def matrix():
    return load_matrix()


@pytest.fixture
def project(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "torch-cuda.txt").write_text(TORCH_CUDA)
    (tmp_path / "requirements" / "torch-cpu.txt").write_text(TORCH_CPU)
    (tmp_path / "requirements" / "test.txt").write_text("-r torch-cuda.txt\npytest>=8\n")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return tmp_path


def bump(project, matrix, version, tv=None, ta=None):
    targets = resolve_targets(version, tv, ta, matrix)
    return plan_bump(collect_files(project), targets, matrix)


def new_text(plan, name):
    return next(f.new_text for f in plan.files if f.file == name)


def test_bump_to_known_release_changes_only_versions(project, matrix):
    plan = bump(project, matrix, "2.14.0")
    assert not plan.problems
    cuda = new_text(plan, "requirements/torch-cuda.txt")
    assert cuda == TORCH_CUDA.replace("torch==2.14.1", "torch==2.14.0").replace("0.29.1", "0.29.0")
    cpu = new_text(plan, "requirements/torch-cpu.txt")
    assert cpu == TORCH_CPU.replace("2.14.1+cpu", "2.14.0+cpu").replace("0.29.1+cpu", "0.29.0+cpu")
    py = new_text(plan, "pyproject.toml")
    # Strings move; the comment and a string that is not a requirement stay.
    assert '"torch==2.14.0"]  # build against this torch' in py
    assert "\"torch==2.14.0; platform_system != 'Darwin'\"" in py
    assert "'torchvision==0.29.0'" in py and '"torch==2.14.0+cpu"' in py
    assert '# "torch==2.14.1" in a comment stays as it is' in py
    assert 'note = "torch==2.14.1 is also what the docs say"' in py
    assert "requirements/test.txt" not in [f.file for f in plan.files]
    # torch-tensorrt is not torch; ranges are reported, not edited.
    assert "torch-tensorrt==2.14.0" in cuda
    assert any("torch>=2.7,<3" in n and "not an == pin" in n for n in plan.notices)
    assert any("torchaudio>=2.11" in n for n in plan.notices)


def test_every_pin_is_consistent_after_bump(project, matrix):
    plan = bump(project, matrix, "2.13.0")
    write_plan(plan, project)
    data = tomllib.loads((project / "pyproject.toml").read_text())
    reqs = data["build-system"]["requires"] + data["project"]["dependencies"] + data["project"]["optional-dependencies"]["cpu"]
    pins = {r.split(";")[0].strip() for r in reqs if r.startswith(("torch", "Torch"))}
    assert pins == {"torch==2.13.0", "torchvision==0.28.0", "torch==2.13.0+cpu", "torchaudio>=2.11"}
    assert "torchvision == 0.28.0 ; platform_machine" in (project / "requirements/torch-cuda.txt").read_text()
    assert "TorchVision[extra]==0.28.0; python_version" in (project / "requirements/torch-cuda.txt").read_text()
    # A second run finds nothing to do.
    assert bump(project, matrix, "2.13.0").files == ()


def test_torchaudio_on_the_stable_abi_is_kept(project, matrix):
    plan = bump(project, matrix, "2.13.0")
    assert plan.targets.torchaudio == "2.11.0"
    assert "torchaudio" not in {e.package for e in plan.edits}
    plan = bump(project, matrix, "2.9.1")
    assert plan.targets.torchaudio == "2.9.1"
    assert ("torchaudio", "2.11.0", "2.9.1") in {(e.package, e.old, e.new) for e in plan.edits}


def test_unknown_release_is_a_problem_with_derived_companions(project, matrix):
    plan = bump(project, matrix, "2.15.0")
    assert any("torch 2.15.0 is not in the compatibility matrix" in p for p in plan.problems)
    assert (plan.targets.torchvision, plan.targets.torchaudio) == ("0.30.0", "2.11.0")
    assert "derived" in plan.targets.notes[0]


def test_mismatched_companion_is_a_problem(project, matrix):
    plan = bump(project, matrix, "2.14.1", tv="0.28.0")
    assert any("torchvision 0.28.0 does not go with torch 2.14.1" in p for p in plan.problems)
    assert not bump(project, matrix, "2.14.1", ta="2.14.0").problems  # stable ABI: any >= 2.11
    plan = bump(project, matrix, "2.9.1", ta="2.9.0")
    assert any("torchaudio 2.9.0 does not go with torch 2.9.1" in p for p in plan.problems)


def test_local_tag_not_published_for_the_target_is_a_problem(tmp_path, matrix):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "torch.txt").write_text("torch==2.14.1+cu130\ntorchvision==0.29.1+cu130\n")
    plan = bump(tmp_path, matrix, "2.8.0")
    assert any("requirements/torch.txt:1" in p and "publishes no cu130" in p for p in plan.problems)
    assert new_text(plan, "requirements/torch.txt") == "torch==2.8.0+cu130\ntorchvision==0.23.0+cu130\n"
    assert not bump(tmp_path, matrix, "2.9.1").problems


def test_hash_pinned_lock_files_are_refused(tmp_path, matrix):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "lock.txt").write_text(
        "torch==2.14.1 \\\n    --hash=sha256:0123\nfilelock==3.20.0 --hash=sha256:4567\n")
    plan = bump(tmp_path, matrix, "2.14.0")
    assert any("hash-checked" in p and "lock.txt:1" in p for p in plan.problems)


def test_crlf_and_markers_survive(tmp_path, matrix):
    (tmp_path / "requirements").mkdir()
    body = "torch==2.14.1 ; python_version < \"3.13\"\r\n# comment\r\ntorchvision==0.29.1\r\n"
    (tmp_path / "requirements" / "win.txt").write_bytes(body.encode())
    plan = bump(tmp_path, matrix, "2.14.0")
    write_plan(plan, tmp_path)
    assert (tmp_path / "requirements" / "win.txt").read_bytes() == body.replace("2.14.1", "2.14.0").replace(
        "0.29.1", "0.29.0").encode()


def test_diff_is_a_unified_diff(project, matrix):
    diff = next(f.diff() for f in bump(project, matrix, "2.14.0").files if f.file == "requirements/torch-cpu.txt")
    assert diff.startswith("--- a/requirements/torch-cpu.txt\n+++ b/requirements/torch-cpu.txt\n@@")
    assert '\n-torch==2.14.1+cpu ; sys_platform == "linux"\n-torchvision==0.29.1+cpu\n' in diff
    assert '\n+torch==2.14.0+cpu ; sys_platform == "linux"\n+torchvision==0.29.0+cpu\n' in diff
    assert "\n torch>=2.7,<3  # a range: not a pin\n" in diff


def test_write_keeps_file_mode(project, matrix):
    path = project / "requirements" / "torch-cpu.txt"
    os.chmod(path, 0o640)
    write_plan(bump(project, matrix, "2.14.0"), project)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert "2.14.0+cpu" in path.read_text()
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    "torch,tv,ta,match",
    [
        ("2.15", None, None, "malformed torch version '2.15'"),
        ("two", None, None, "malformed torch version 'two'"),
        ("2.15.0+cu130", None, None, "without a local tag"),
        ("2.14.1", "zero", None, "malformed torchvision version"),
        ("2.14.1", None, "2.11", "malformed torchaudio version"),
    ],
)
def test_malformed_versions(matrix, torch, tv, ta, match):
    with pytest.raises(KernloopError, match=match) as exc:
        resolve_targets(torch, tv, ta, matrix)
    assert "\n" not in exc.value.one_line()


def test_no_files_is_an_error(tmp_path):
    with pytest.raises(KernloopError, match="no requirements/.*pyproject.toml"):
        collect_files(tmp_path)
