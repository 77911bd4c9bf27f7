"""The build state the next build trusts, in one place.

Three things decide whether a build dir can be reused as it is: the presets written for this
machine, the fingerprint of the facts they were planned from (``.kernloop-state.json`` in the
build dir), and the CMake cache configured from them. This module alone reads and writes them;
the runner, doctor and the pip backend ask it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from buildtools.cmake import presets
from buildtools.cmake.presets import ResolvedPreset
from buildtools.errors import KernloopError
from buildtools.model import Facts, to_jsonable
from buildtools.settings import OVERRIDE_ENV_VARS, load_config
from buildtools.util import fileio
from buildtools.util.lock import LOCK_FILES

__all__ = [
    "STATE_NAME",
    "facts_fingerprint",
    "configure_reason",
    "read_state",
    "write_state",
    "clean_build_dir",
    "default_build_dir",
    "write_presets",
    "PresetWriter",
]

STATE_NAME = ".kernloop-state.json"


def _configured_remote(source_dir: Path) -> str | None:
    """``[tool.buildtools] remote-cache`` as written (None: none or unreadable; the planner
    reports a broken file)."""
    try:
        return load_config(source_dir).remote_cache
    except KernloopError:
        return None


def facts_fingerprint(facts: Facts, env: Mapping[str, str]) -> dict[str, Any]:
    """The facts that shape the presets. Cores/RAM are left out on purpose: they wobble
    from run to run, and a stale job count is harmless where a stale nvcc path is not."""

    def prog(p: Any) -> list[str] | None:
        return None if p is None else [str(p.path), str(p.version)]

    fingerprint = {
        "python": [str(facts.python.executable), facts.python.version],
        "torch": None if facts.torch is None else [facts.torch.version, str(facts.torch.root), facts.torch.cuda],
        "nvcc": None if facts.nvcc is None else [str(facts.nvcc.path), facts.nvcc.version],
        "cmake": prog(facts.cmake),
        "ccache": prog(facts.ccache),
        "sccache": prog(facts.sccache),
        "overrides": {k: env[k] for k in OVERRIDE_ENV_VARS if str(env.get(k, "")).strip()},
    }
    if facts.extra:  # a platform plugin's toolchain (e.g. hipcc) shapes the presets like nvcc does
        fingerprint["platforms"] = to_jsonable(facts.extra)
    # The shared cache lives in the presets' environment: a new [tool.buildtools] remote-cache
    # must rewrite them too (only present when set, so other builds keep their fingerprint).
    configured = _configured_remote(facts.source_dir)
    if configured:
        fingerprint["remote_cache"] = configured
    return fingerprint


def configure_reason(build_dir: Path, state: Mapping[str, Any], preset: ResolvedPreset, fingerprint: Mapping[str, Any]) -> str | None:
    """Why the build dir must be configured again (None: it need not)."""
    if not (build_dir / "CMakeCache.txt").exists():
        return "no CMake cache yet"
    if not (build_dir / "build.ninja").exists():
        return "no build.ninja"
    if state.get("fingerprint") != fingerprint:
        return "the toolchain changed"
    if state.get("preset") != preset.digest:
        return f"preset {preset.name!r} changed"
    return None


def clean_build_dir(build_dir: Path) -> None:
    """Remove everything in ``build_dir`` except its lock files and the facts fingerprint
    (a clean build is not a reason to rewrite the presets)."""
    if not build_dir.is_dir():
        return
    for child in build_dir.iterdir():
        if child.name in LOCK_FILES or child.name == STATE_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def read_state(build_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((build_dir / STATE_NAME).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(build_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = build_dir / f"{STATE_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, build_dir / STATE_NAME)


def default_build_dir(source_dir: Path, preset: str) -> Path:
    return source_dir / presets.build_dir_name(preset)


PresetWriter = Callable[[Path, Mapping[str, str], Callable[[str], None]], "tuple[Facts, bool]"]


def write_presets(source_dir: Path, env: Mapping[str, str], say: Callable[[str], None]) -> tuple[Facts, bool]:
    """Detect, plan and merge our presets into CMakeUserPresets.json (the user's own kept,
    the old file backed up, one atomic write): what ``presets --force-overwrite`` does,
    since a build only gets here when the machine changed. Returns the facts it planned
    from and whether the file changed."""
    from buildtools.session import PlanOptions, plan_for  # lazy: an up-to-date build plans nothing

    facts, plan = plan_for(PlanOptions(source_dir=source_dir, env=env))
    path = source_dir / presets.FILE_NAME
    text = fileio.read_text(path)
    existing = None
    if text is not None:
        try:
            existing = presets.parse(text)
        except presets.InvalidPresets as exc:
            where = f"{path}:{exc.line}" if exc.line else str(path)
            raise KernloopError(f"{where}: {exc.message}", "fix it, or replace it: python -m buildtools presets --force-overwrite") from None
    new_text = presets.dumps(presets.merge(existing, presets.render(plan)).document)
    if new_text != text:
        fileio.atomic_write_text(path, new_text, keep_backup=True)
    for warning in plan.warnings:
        say(f"warning: {warning}")
    return facts, new_text != text
