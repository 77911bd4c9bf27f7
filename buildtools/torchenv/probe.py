"""Facts about a target environment for the torch/wheels commands.

torch and nvcc come from ``buildtools.detect`` (the same readers the presets generator uses: torch's
``version.py`` is read, never imported). The one thing detection does not collect, the installed
distributions (name -> version), is read here with ``importlib.metadata`` in the target interpreter.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from buildtools.util import proc
from buildtools.detect.nvcc import find_nvcc
from buildtools.detect.python import probe_python
from buildtools.detect.torch import torch_facts
from buildtools.errors import KernloopError
from buildtools.model import NvccFacts, PythonFacts, TorchFacts

__all__ = [
    "TargetEnv",
    "normalize",
    "target_env",
    "require_torch",
    "installed_distributions",
    "detect_nvcc",
]


def normalize(name: str) -> str:
    """PEP 503 name normalisation: ``Nixl_CU12`` -> ``nixl-cu12``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class TargetEnv:
    python: PythonFacts
    torch: TorchFacts | None
    notes: tuple[str, ...]


def target_env(python: Path | None = None, env: Mapping[str, str] | None = None) -> TargetEnv:
    """The target interpreter (``--python`` or the running one) and its torch, if any."""
    env = dict(os.environ if env is None else env)
    py = probe_python(python, env)
    torch, notes = torch_facts(py.torch_dir, py.facts.executable)
    return TargetEnv(py.facts, torch, tuple(notes))


def require_torch(target: TargetEnv) -> TorchFacts:
    if target.torch is None:
        why = f" ({target.notes[0]})" if target.notes and "version.py" in target.notes[0] else ""
        raise KernloopError(
            f"torch is not installed in {target.python.executable}{why}",
            "install torch (python -m pip install -r requirements/torch-cuda.txt), "
            "or pass --python PATH to the interpreter that has it",
        )
    return target.torch


# Runs inside the target interpreter: first distribution of each name on sys.path wins, as for import.
_DISTS_SCRIPT = r"""
import importlib.metadata as m, json, re
out = {}
for d in m.distributions():
    name = d.metadata["Name"]
    if name:
        out.setdefault(re.sub(r"[-_.]+", "-", name).lower(), d.version)
print(json.dumps(out))
"""


def installed_distributions(python: Path | None = None) -> dict[str, str]:
    """Normalised distribution name -> version installed for ``python`` (default: this interpreter)."""
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        import importlib.metadata as metadata

        found: dict[str, str] = {}
        for dist in metadata.distributions():
            name = dist.metadata["Name"]
            if name:
                found.setdefault(normalize(name), dist.version)
        return found
    result = proc.run([python, "-c", _DISTS_SCRIPT], timeout=60)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1]) if result.ok else None
    except (ValueError, IndexError):
        data = None
    if not isinstance(data, dict):
        first = (result.stderr or result.stdout).strip().splitlines()
        raise KernloopError(
            f"cannot list the packages of {python}: {first[-1] if first else f'exit code {result.returncode}'}",
            "pass --python PATH to a working Python >= 3.8 interpreter",
        )
    return {str(k): str(v) for k, v in data.items()}


def detect_nvcc(explicit: Path | None = None, env: Mapping[str, str] | None = None) -> tuple[NvccFacts | None, list[str]]:
    """nvcc as the presets generator finds it (``--nvcc``, CUDACXX, CUDA_HOME, PATH, ...)."""
    return find_nvcc(explicit, dict(os.environ if env is None else env))
