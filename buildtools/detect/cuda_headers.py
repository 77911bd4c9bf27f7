"""CUDA headers installed by pip next to torch.

torch's CUDA headers include cuBLAS/cuSPARSE headers (``ATen/cuda/CUDAContextLight.h``
needs ``cusparse.h``) that a slim toolkit may lack. The torch wheel depends on
``nvidia-*`` packages that ship them: ``site-packages/nvidia/cu13/include`` (CUDA 13
wheels, one directory) or ``nvidia/cublas/include``, ``nvidia/cusparse/include``, ...
(CUDA 12 wheels, one per library).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

__all__ = ["pip_cuda_include_dirs"]

_CU_DIR = re.compile(r"cu(\d+)$")


def pip_cuda_include_dirs(site_dirs: Iterable[Path], cuda_major: int | None = None) -> tuple[Path, ...]:
    """``nvidia/cu*/include`` dirs first, then the other ``nvidia/*/include``, deduplicated.

    With ``cuda_major`` (torch's, else nvcc's CUDA major), a ``cuNN`` dir of another
    major is left out: CUDA 12 headers in a CUDA 13 build break it.
    """
    versioned: list[Path] = []
    others: list[Path] = []
    seen: set[str] = set()
    for site in site_dirs:
        nvidia = Path(site) / "nvidia"
        try:
            children = sorted(nvidia.iterdir())
        except OSError:
            continue
        for child in children:
            include = child / "include"
            if not include.is_dir():
                continue
            key = os.path.realpath(include)
            if key in seen:
                continue
            seen.add(key)
            match = _CU_DIR.match(child.name)
            if match:
                if cuda_major is None or int(match.group(1)) == cuda_major:
                    versioned.append(include)
            else:
                others.append(include)
    return tuple(versioned + others)
