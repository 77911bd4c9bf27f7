"""The build stamp and the import-time stale check (no compiler): buildtools' writer and reader
and kernloop's stdlib-only reader agree on every case."""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from buildtools.run import stamp

ROOT = Path(__file__).resolve().parents[2]


def _kernloop_stale():
    """kernloop/_stale.py by path: importing the package would load torch and the modules."""
    spec = importlib.util.spec_from_file_location("kernloop_stale_under_test", ROOT / "kernloop" / "_stale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KL = _kernloop_stale()


def _later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.fixture
def tree(tmp_path: Path):
    src = tmp_path / "src"
    (src / "csrc" / "cuda").mkdir(parents=True)
    (src / "csrc" / "ops.cpp").write_text("// glue\n")
    (src / "csrc" / "cuda" / "k.cu").write_text("// kernel\n")
    (src / "cmake").mkdir()
    (src / "cmake" / "x.cmake").write_text("# x\n")
    (src / "CMakeLists.txt").write_text("project(x)\n")
    pkg = src / "kernloop"
    pkg.mkdir()
    so = pkg / "_C.abi3.so"
    so.write_bytes(b"elf")
    stamp.write_stamps(src, [so], stamp.snapshot(src), "2.14.1+cu130")
    return src, pkg, so


def _both(pkg: Path, torch: str | None = "2.14.1+cu130") -> str | None:
    ours, theirs = stamp.stale_reason(pkg, torch), KL.stale_reason(str(pkg), torch)
    assert ours == theirs
    return ours


def test_fresh_build_is_not_stale(tree):
    _, pkg, _ = tree
    assert (pkg / stamp.STAMP_NAME).is_file()
    assert _both(pkg) is None


def test_an_edit_an_addition_a_removal_and_another_torch(tree):
    src, pkg, _ = tree
    _later(src / "csrc" / "cuda" / "k.cu")
    assert _both(pkg) == "csrc/cuda/k.cu changed after the build"
    stamp.write_stamps(src, [pkg / "_C.abi3.so"], stamp.snapshot(src), "2.14.1+cu130")  # built again
    assert _both(pkg) is None
    time.sleep(0.01)
    (src / "csrc" / "new.cpp").write_text("// new\n")
    assert _both(pkg) == "csrc changed after the build"  # its directory's mtime
    stamp.write_stamps(src, [pkg / "_C.abi3.so"], stamp.snapshot(src), "2.14.1+cu130")
    (src / "cmake" / "x.cmake").unlink()
    assert _both(pkg) in ("cmake changed after the build", "cmake/x.cmake was removed after the build")
    stamp.write_stamps(src, [pkg / "_C.abi3.so"], stamp.snapshot(src), "2.14.1+cu130")
    assert _both(pkg, "2.15.0+cu130") == "it was built against torch 2.14.1+cu130, this is torch 2.15.0+cu130"


def test_no_verdict_without_a_stamp_of_this_tree(tree, tmp_path: Path):
    src, pkg, so = tree
    _later(src / "CMakeLists.txt")
    so.write_bytes(b"installed by plain cmake --install since")  # the stamp no longer describes it
    assert _both(pkg) is None
    copy = tmp_path / "elsewhere" / "kernloop"  # a copied (or pip-installed) package
    copy.mkdir(parents=True)
    (copy / stamp.STAMP_NAME).write_text((pkg / stamp.STAMP_NAME).read_text())
    assert _both(copy) is None
    assert _both(tmp_path / "nothing-here") is None


def test_the_stamp_never_ships():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'wheel.exclude = ["kernloop/.build-stamp.json"]' in text
    assert ".build-stamp.json" in (ROOT / ".gitignore").read_text()
