"""Where the toolchain facts came from, as a key that a stat can check.

Detection runs nvcc three times, every tool's ``--version`` and a scan of ``sys.path``: about
a tenth of a second that a build with nothing to do should not pay. A fact can only change when
one of the files or directories it was read from changes, or one of the environment variables
that steer the search does. :func:`fact_paths` names those files for a set of facts,
:func:`buildtools.util.stamp.stat_key` records them (``st_mtime_ns``, ``st_size``, ``st_ino``, where a link points),
and :func:`env_rule` says which variables to hash (``buildtools.util.stamp``). The build state (``buildtools.run.state``) keeps the key next to the facts and
trusts them only while every entry of the key still matches.

What is watched, and why:

* every directory on ``PATH`` and the target Python's ``bin`` (a new nvcc, cmake or ninja
  appears there), the nvcc fallbacks (``/usr/local/cuda/bin/nvcc``);
* nvcc as found and as resolved, its toolkit's ``version.json``;
* the Python executable, every ``sys.path`` directory (``pip install`` adds or removes a
  ``*.dist-info`` there: a new torch, a platform plugin), torch's package dir and ``version.py``;
* the cmake, ninja, ccache and sccache binaries;
* detection's own code (``buildtools/detect``, ``model.py``), so an upgrade re-detects.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Mapping

from buildtools.model import Facts

__all__ = ["ENV_NAMES", "ENV_PREFIXES", "fact_paths", "env_rule"]

# Variables detection reads (nvcc search, the Python's sys.path, the tools' search path) ...
ENV_NAMES = ("PATH", "CMAKE_CUDA_COMPILER", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH")
# ... and families of them: CUDACXX, CUDA_HOME, CUDA_PATH; PYTHONPATH, PYTHONHOME, PYTHONUSERBASE;
# every KERNLOOP_* (the overrides, the plugin switch).
ENV_PREFIXES = ("CUDA", "PYTHON", "KERNLOOP_")
_HERE = Path(__file__).resolve().parent


def env_rule() -> dict[str, list[str]]:
    """Which variables steer detection, as the record keeps it (the check needs no import of this)."""
    return {"names": list(ENV_NAMES), "prefixes": list(ENV_PREFIXES)}


def _code_files() -> list[str]:
    files = sorted(str(p) for p in _HERE.glob("*.py"))
    return files + [str(_HERE.parent / "model.py")]


def fact_paths(facts: Facts, env: Mapping[str, str], fallbacks: Iterable[Path] | None = None) -> tuple[str, ...]:
    """The files and directories the toolchain facts were read from (see the module text);
    ``fallbacks``: the nvcc locations tried after PATH (None: detection's defaults)."""
    if fallbacks is None:
        from buildtools.detect.nvcc import DEFAULT_NVCC

        fallbacks = (DEFAULT_NVCC,)
    paths: list[str] = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    paths.append(str(facts.python.executable))
    paths.append(str(Path(facts.python.executable).parent))
    paths += [p for p in sys.path if p]
    paths += [str(p) for p in fallbacks]
    if facts.nvcc is not None:
        paths += [str(facts.nvcc.found_as), str(facts.nvcc.path), str(facts.nvcc.root / "version.json")]
    if facts.torch is not None:
        paths += [str(facts.torch.root), str(facts.torch.root / "version.py"), str(facts.torch.root.parent)]
    for program in (facts.cmake, facts.ninja, facts.ccache, facts.sccache):
        if program is not None:
            paths.append(str(program.path))
    paths += _code_files()
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(os.path.abspath(p), None)
    return tuple(seen)
