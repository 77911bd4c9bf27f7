"""Versions: one parser, every minimum version buildtools relies on, and the CUDA-major rule.

Tools print their versions inside prose (``ccache version 4.14.2``, ``Cuda compilation tools,
release 13.0, V13.0.88``, ``2.14.1+cu130``); :func:`parse_version` takes the first dotted number
and returns a :class:`packaging.version.Version`, so comparisons are packaging's, not ours.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

__all__ = [
    "Version",
    "parse_version",
    "version_tuple",
    "release_tuple",
    "at_least",
    "CMAKE_MIN",
    "NINJA_MIN",
    "CCACHE_NVCC_MIN",
    "CCACHE_REMOTE_MIN",
    "SCCACHE_REMOTE_MIN",
    "CudaAlignment",
    "cuda_alignment",
]

_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_NUMBER = re.compile(r"\d+")

# Presets version 6 (workflow presets) and the FindPython/Python_add_library features we use.
CMAKE_MIN = Version("3.26")
NINJA_MIN = Version("1.11")
# ccache caches nvcc compilations from 4.12.3 on; an older one is used for C/C++ only.
CCACHE_NVCC_MIN = Version("4.12.3")
# Remote storage: ccache 4.4 (redis/http/file backends), sccache 0.15 (the read-only modes).
CCACHE_REMOTE_MIN = Version("4.4")
SCCACHE_REMOTE_MIN = Version("0.15")


def parse_version(text: object) -> Version | None:
    """The first dotted number in ``text`` as a Version (``"ccache version 4.14.2"`` -> 4.14.2)."""
    text = str(text or "")
    match = _DOTTED.search(text) or _NUMBER.search(text)  # "GNU 12 ... 12.2.0" -> 12.2.0
    return Version(match.group(0)) if match else None


def version_tuple(text: object) -> tuple[int, ...]:
    """``"4.14.2"`` -> ``(4, 14, 2)``; () when ``text`` holds no number."""
    version = parse_version(text)
    return version.release if version is not None else ()


def release_tuple(text: str) -> tuple[int, ...]:
    """Strict: ``"13.0"`` -> ``(13, 0)``; ValueError unless ``text`` is only dotted digits (data files)."""
    if not re.fullmatch(r"\d+(?:\.\d+)*", text):
        raise ValueError(f"not a dotted version: {text!r}")
    return tuple(int(p) for p in text.split("."))


def at_least(text: object, minimum: Version) -> bool | None:
    """Whether the version in ``text`` is >= ``minimum``; None when ``text`` has none."""
    version = parse_version(text)
    return None if version is None else version >= minimum


@dataclass(frozen=True)
class CudaAlignment:
    """How nvcc's CUDA fits torch's: ``level`` is a finding level (ok | warning | error)."""

    level: str
    message: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.message}: {self.fix}" if self.fix else self.message


def cuda_alignment(torch_version: str, torch_cuda: str, nvcc_version: str, nvcc_path: Path | str) -> CudaAlignment:
    """The one rule: extensions need nvcc's CUDA major to equal torch's (torch's cpp_extension refuses
    a major mismatch and warns on a minor one; CUDA's minor-version compatibility covers the rest)."""
    t, n = version_tuple(torch_cuda), version_tuple(nvcc_version)
    said = f"torch {torch_version} was built with CUDA {torch_cuda} but nvcc is {nvcc_version} ({nvcc_path})"
    if t[:1] != n[:1]:
        return CudaAlignment(
            "error", f"{said}: CUDA majors differ, so the extensions would not build or load",
            f"use a CUDA {t[0] if t else '?'}.x nvcc (--nvcc PATH or CUDACXX), or a torch built for CUDA "
            f"{n[0] if n else '?'}.x (see requirements/torch-cuda.txt)")
    if t[:2] != n[:2]:
        return CudaAlignment(
            "warning", f"{said}: same major, different minor; builds work (CUDA minor-version compatibility), "
            "torch's cpp_extension warns", f"prefer nvcc {torch_cuda} (--nvcc PATH)")
    return CudaAlignment("ok", f"torch CUDA {torch_cuda} = nvcc {nvcc_version} ({nvcc_path})")
