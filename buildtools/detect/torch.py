"""torch facts read from its installed files, never by importing it.

``import torch`` takes seconds (it loads CUDA libraries); the generator's whole run
must stay well under a second. Everything we need is in plain files:

- ``torch/version.py``: ``__version__``, ``cuda``, ``hip`` as literal assignments;
- ``torch/share/cmake``: what ``torch.utils.cmake_prefix_path`` returns;
- ``share/cmake/Torch/TorchConfig.cmake``: builds that choose the C++ ABI explicitly
  say so in ``TORCH_CXX_FLAGS`` (``-D_GLIBCXX_USE_CXX11_ABI=0|1``).
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

from buildtools.model import TorchFacts

__all__ = ["read_version_py", "read_cxx11_abi", "torch_facts"]

_ABI_RE = re.compile(r"_GLIBCXX_USE_CXX11_ABI=([01])\b")


def read_version_py(path: Path) -> dict[str, Any]:
    """The literal top-level assignments of a ``version.py`` (name -> value)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                values[target.id] = literal
    return values


def read_cxx11_abi(torch_config: Path, platform: str = sys.platform) -> tuple[bool | None, str]:
    """(abi, how we know) from TorchConfig.cmake.

    An explicit ``-D_GLIBCXX_USE_CXX11_ABI=N`` there wins. Recent torch (2.7 on, which
    only ships the new ABI) writes no flag, so the compiler default applies: the new ABI
    with libstdc++ on Linux. Elsewhere the macro means nothing: None.
    """
    try:
        text = torch_config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = None
    if text is not None:
        match = _ABI_RE.search(text)
        if match:
            return match.group(1) == "1", f"TorchConfig.cmake sets _GLIBCXX_USE_CXX11_ABI={match.group(1)}"
    if not platform.startswith("linux"):
        return None, "not a libstdc++ platform"
    if text is None:
        return None, "no TorchConfig.cmake to read"
    return True, "TorchConfig.cmake sets no ABI flag: libstdc++'s default, the C++11 ABI"


def torch_facts(torch_dir: Path | None, python: Path) -> tuple[TorchFacts | None, list[str]]:
    """TorchFacts for the torch package at ``torch_dir``, or None with a note saying why."""
    if torch_dir is None:
        return None, [
            f"torch is not installed in {python}: the kernels need torch "
            f"({python} -m pip install -r requirements/torch-cuda.txt)"
        ]
    version_py = torch_dir / "version.py"
    try:
        values = read_version_py(version_py)
    except (OSError, SyntaxError, ValueError) as exc:
        why = "missing" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        return None, [f"torch at {torch_dir} has no usable version.py ({why}): reinstall torch in {python}"]
    version = values.get("__version__")
    if not isinstance(version, str) or not version:
        return None, [f"{version_py} sets no __version__: reinstall torch in {python}"]
    cuda = values.get("cuda") if isinstance(values.get("cuda"), str) else None
    hip = values.get("hip") if isinstance(values.get("hip"), str) else None

    notes: list[str] = []
    cmake_prefix = torch_dir / "share" / "cmake"
    torch_config = cmake_prefix / "Torch" / "TorchConfig.cmake"
    if not torch_config.is_file():
        notes.append(f"torch {version} at {torch_dir} has no share/cmake/Torch/TorchConfig.cmake: CMake cannot find it")
    abi, abi_how = read_cxx11_abi(torch_config)
    if cuda is None and hip is None:
        notes.append(f"torch {version} in {python} is a CPU-only build (version.py: cuda=None)")
    source = f"{version_py} and {cmake_prefix} (read, not imported); C++ ABI: {abi_how}"
    facts = TorchFacts(
        version=version, cuda=cuda, hip=hip, root=torch_dir, cmake_prefix=cmake_prefix, cxx11_abi=abi, source=source
    )
    return facts, notes
