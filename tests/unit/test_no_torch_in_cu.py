"""No .cu/.cuh in csrc/ reaches a torch header, directly or through a local header it includes.

A .cu that includes ATen/cuda headers took 141 s and 2.7 GB to compile here; a torch-free one 3.5 s.
The kernels therefore take raw pointers and streams, and torch stays in the .cpp glue.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[2] / "csrc"
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)
TORCH_PREFIXES = ("torch/", "ATen/", "c10/", "caffe2/", "pybind11/", "Python.h")
BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
LINE_COMMENT = re.compile(r"//[^\n]*")


def includes(path: Path) -> list[tuple[str, str]]:
    text = LINE_COMMENT.sub("", BLOCK_COMMENT.sub("", path.read_text(encoding="utf-8")))
    return INCLUDE.findall(text)


def resolve_local(name: str, including: Path, root: Path) -> Path | None:
    """Where a quoted include resolves: next to the includer, then the csrc/ include root."""
    for base in (including.parent, root):
        candidate = (base / name).resolve()
        if candidate.is_file():
            return candidate
    return None


def torch_includes(source: Path, root: Path) -> list[str]:
    """Every torch-family include reachable from source, as 'file: <header>' (empty when clean)."""
    found: list[str] = []
    seen: set[Path] = set()
    todo = [source.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for kind, name in includes(path):
            if name.startswith(TORCH_PREFIXES):
                found.append(f"{path.relative_to(root.resolve())}: <{name}>")
            elif kind == '"':
                local = resolve_local(name, path, root)
                if local is not None:
                    todo.append(local)
    return found


def cuda_sources(root: Path) -> list[Path]:
    return sorted([*root.rglob("*.cu"), *root.rglob("*.cuh")])


def test_csrc_has_cuda_sources():
    assert cuda_sources(CSRC), f"no .cu/.cuh under {CSRC}"


@pytest.mark.parametrize("source", cuda_sources(CSRC), ids=lambda p: str(p.relative_to(CSRC)))
def test_cuda_source_is_torch_free(source: Path):
    assert torch_includes(source, CSRC) == []


def test_the_check_sees_through_local_headers(tmp_path: Path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "types.h").write_text('#pragma once\n#include "deep.h"\n')
    (tmp_path / "common" / "deep.h").write_text("#pragma once\n  #  include <ATen/cuda/CUDAContext.h>\n")
    (tmp_path / "k.cu").write_text('#include "common/types.h"\n#include <cuda_runtime.h>\n')
    (tmp_path / "clean.cu").write_text('// #include <torch/all.h>\n/* #include <c10/core/Scalar.h> */\n'
                                       '#include <cuda_fp16.h>\n')
    assert torch_includes(tmp_path / "k.cu", tmp_path) == ["common/deep.h: <ATen/cuda/CUDAContext.h>"]
    assert torch_includes(tmp_path / "clean.cu", tmp_path) == []
