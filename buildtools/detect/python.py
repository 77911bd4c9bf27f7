"""The target Python: which interpreter, its version, its site-packages, where torch is.

The running interpreter is asked in-process; another one (``--python PATH``) with one
short subprocess. Either way torch is located with ``importlib.util.find_spec``, which
finds the package without executing it: ``import torch`` costs seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from buildtools.util import proc
from buildtools.errors import KernloopError
from buildtools.model import PythonFacts
from buildtools.detect._common import PROBE_TIMEOUT_S, first_line
from buildtools.versions import version_tuple

__all__ = ["PythonEnv", "PROBE_SCRIPT", "probe_python", "python_notes"]

# Runs in the target interpreter (any Python >= 3.6 can parse it) and prints one JSON
# object. The same text runs in-process for the current interpreter, so both paths agree.
PROBE_SCRIPT = r"""
import importlib.util, json, os, sys, sysconfig

def _kernloop_probe():
    sites = []
    paths = sysconfig.get_paths()
    for key in ("platlib", "purelib"):
        if paths.get(key) and paths[key] not in sites:
            sites.append(paths[key])
    for entry in sys.path:  # user site, PYTHONPATH site dirs
        if entry.rstrip("/\\").endswith(("site-packages", "dist-packages")) and entry not in sites:
            sites.append(entry)
    torch_dir = None
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        locations = list(spec.submodule_search_locations or [])
        if locations:
            torch_dir = locations[0]
        elif spec.origin:
            torch_dir = os.path.dirname(spec.origin)
    return {
        "executable": sys.executable,
        "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "sites": sites,
        "torch": torch_dir,
    }
"""


@dataclass(frozen=True)
class PythonEnv:
    """What detection needs to know about the target Python, beyond the public fact."""

    facts: PythonFacts
    site_dirs: tuple[Path, ...]
    torch_dir: Path | None  # where find_spec("torch") points; None: torch not installed

    @property
    def bin_dir(self) -> Path:
        # Not resolved: a venv's python is a symlink to the base interpreter, and the
        # venv's bin dir (with its cmake, ninja, ccache) is the one we want.
        return self.facts.executable.parent


def _probe_here() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(PROBE_SCRIPT, namespace)  # noqa: S102 - our own constant, see PROBE_SCRIPT
    return namespace["_kernloop_probe"]()


def _resolve_user_python(path: Path, env: Mapping[str, str]) -> Path:
    hint = "pass --python PATH to a Python interpreter (e.g. --python .venv/bin/python)"
    text = str(path)
    if os.sep not in text and "/" not in text:  # a bare name such as python3.12
        hit = shutil.which(text, path=env.get("PATH", ""))
        if not hit:
            raise KernloopError(f"--python {text}: not found on PATH", hint)
        return Path(hit)
    path = Path(os.path.abspath(path.expanduser()))
    if not path.exists():
        raise KernloopError(f"--python {path}: no such file", hint)
    if path.is_dir():
        raise KernloopError(f"--python {path} is a directory", f"pass the interpreter, e.g. --python {path / 'bin' / 'python'}")
    return path


def probe_python(executable: Path | None, env: Mapping[str, str]) -> PythonEnv:
    """The running interpreter (``executable`` None or the same path) or the given one.

    Raises KernloopError naming ``--python`` when the given interpreter cannot be run.
    """
    if executable is None or os.path.abspath(executable) == os.path.abspath(sys.executable):
        data = _probe_here()
        exe = Path(sys.executable)
        source = "--python (the running interpreter)" if executable is not None else "sys.executable (the running interpreter)"
    else:
        exe = _resolve_user_python(Path(executable), env)
        code = PROBE_SCRIPT + "\nprint(json.dumps(_kernloop_probe()))\n"
        try:
            result = proc.run([exe, "-c", code], env=env, timeout=PROBE_TIMEOUT_S)
        except KernloopError as exc:
            raise KernloopError(f"--python {exe}: {exc.message}", "pass --python PATH to a working Python interpreter") from None
        data = None
        if result.ok:
            try:
                data = json.loads(result.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                data = None
        if not isinstance(data, dict):
            detail = first_line(result.stderr) or first_line(result.stdout) or f"exit code {result.returncode}"
            raise KernloopError(
                f"--python {exe} does not run as a Python interpreter: {detail}",
                "pass --python PATH to a Python >= 3.10 interpreter",
            )
        source = "--python"
    version = str(data.get("version", ""))
    facts = PythonFacts(executable=exe, version=version, source=source)
    sites = tuple(Path(s) for s in data.get("sites") or [])
    torch_dir = Path(data["torch"]) if data.get("torch") else None
    return PythonEnv(facts=facts, site_dirs=sites, torch_dir=torch_dir)


def python_notes(env: PythonEnv) -> list[str]:
    """Findings worth a line: an interpreter too old for kernloop."""
    if version_tuple(env.facts.version)[:2] < (3, 10):
        return [f"Python {env.facts.version} at {env.facts.executable} is older than 3.10, which kernloop needs"]
    return []
