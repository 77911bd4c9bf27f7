"""The build state the next build trusts, in one place.

Three things decide whether a build dir can be reused as it is: the presets written for this
machine, the fingerprint of the facts they were planned from (``.kernloop-state.json`` in the
build dir), and the CMake cache configured from them. This module alone reads and writes them;
the runner, doctor and the pip backend ask it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from buildtools.cmake import presets
from buildtools.cmake.file_api import read_cmake_cache
from buildtools.cmake.presets import ResolvedPreset
from buildtools.errors import KernloopError
from buildtools.model import Facts
from buildtools.run.noop import UTILITY_SUFFIX
from buildtools.util.jsonable import to_jsonable
from buildtools.settings import OVERRIDE_ENV_VARS, load_config
from buildtools.util import fileio
from buildtools.util.lock import LOCK_FILES
from buildtools.util.secrets import redact
from buildtools.util.stamp import env_digest, key_changes, stat_key

__all__ = [
    "STATE_NAME",
    "facts_fingerprint",
    "Toolchain",
    "toolchain_of",
    "fingerprint_of",
    "cached_toolchain",
    "remember_toolchain",
    "forget_toolchain",
    "record_install",
    "inputs_digest",
    "install_current",
    "presets_reason",
    "what_changed",
    "cache_damaged",
    "configure_reason",
    "needs_fresh",
    "PresetsWritten",
    "read_state",
    "write_state",
    "clean_build_dir",
    "default_build_dir",
    "write_presets",
    "PresetWriter",
]

STATE_NAME = ".kernloop-state.json"
FACTS_NAME = ".kernloop-facts.json"  # the toolchain facts of the last detection, with their stat key
_FACTS_FORMAT = 1
# Bumped when the presets this release writes change shape for the same facts (2: the nvcc
# --threads launcher, CCACHE_IGNOREOPTIONS): the next build rewrites them once after an upgrade.
PLAN_FORMAT = 2


def _settings(source_dir: Path) -> dict[str, Any]:
    """``[tool.buildtools]`` as the planner reads it: an edit there must regenerate the presets.
    A broken table raises, as planning would."""
    config = to_jsonable(load_config(source_dir))
    config.pop("source", None)
    config.pop("warnings", None)
    if config.get("remote_cache"):
        config["remote_cache"] = redact(config["remote_cache"])
    return config


@dataclass(frozen=True)
class Toolchain:
    """What a build takes from detection: the facts' part of the fingerprint, and the cmake to run."""

    fingerprint: Mapping[str, Any]  # facts_fingerprint without the overrides and the settings
    cmake: str | None
    detected: str = "ran"  # how the build got it: "ran (why)" or "cached"


def toolchain_of(facts: Facts, detected: str = "ran") -> Toolchain:
    def prog(p: Any) -> list[str] | None:
        return None if p is None else [str(p.path), str(p.version)]

    fingerprint: dict[str, Any] = {
        "python": [str(facts.python.executable), facts.python.version],
        "torch": None if facts.torch is None else [facts.torch.version, str(facts.torch.root), facts.torch.cuda],
        "nvcc": None if facts.nvcc is None else [str(facts.nvcc.path), facts.nvcc.version],
        "cmake": prog(facts.cmake),
        "ninja": prog(facts.ninja),
        "ccache": prog(facts.ccache),
        "sccache": prog(facts.sccache),
    }
    if facts.extra:  # a platform plugin's toolchain (e.g. hipcc) shapes the presets like nvcc does
        fingerprint["platforms"] = to_jsonable(facts.extra)
    return Toolchain(fingerprint, str(facts.cmake.path) if facts.cmake else None, detected)


def fingerprint_of(toolchain: Toolchain, env: Mapping[str, str], source_dir: Path) -> dict[str, Any]:
    """The toolchain's facts plus what is read afresh every build: overrides and settings."""
    return {
        **toolchain.fingerprint,
        "plan_format": PLAN_FORMAT,
        "overrides": {k: redact(env[k]) for k in OVERRIDE_ENV_VARS if str(env.get(k, "")).strip()},
        "settings": _settings(source_dir),
    }


def facts_fingerprint(facts: Facts, env: Mapping[str, str]) -> dict[str, Any]:
    """Everything that shapes the presets: toolchain, build tools, settings, overrides. Cores/RAM are
    left out on purpose: they wobble from run to run, and a stale job count is harmless where a
    stale nvcc path is not. No secret is kept (URL passwords are masked)."""
    return fingerprint_of(toolchain_of(facts), env, facts.source_dir)


def cached_toolchain(build_dir: Path, env: Mapping[str, str]) -> tuple[Toolchain | None, str]:
    """The toolchain of the last detection in ``build_dir`` while nothing it was read from has
    changed (by stat, see ``buildtools.detect.sources``), else (None, why it must run again)."""
    try:
        data = json.loads((build_dir / FACTS_NAME).read_text())
    except FileNotFoundError:
        return None, "no facts recorded yet"
    except (OSError, ValueError):
        return None, "the recorded facts are unreadable"
    if not isinstance(data, dict) or data.get("format") != _FACTS_FORMAT or not isinstance(data.get("toolchain"), dict):
        return None, "the recorded facts are from another release"
    rule = data.get("env_rule") or {}
    if data.get("env") != env_digest({**env, "<python>": sys.executable}, rule.get("names", ()), rule.get("prefixes", ())):
        return None, "the environment changed"
    changed = key_changes(data.get("key") or [])
    if changed is not None:
        return None, f"{changed} changed"
    return Toolchain(data["toolchain"], data.get("cmake"), "cached"), ""


def remember_toolchain(build_dir: Path, facts: Facts, env: Mapping[str, str], started_ns: int,
                       fallbacks: tuple[Path, ...] | None = None) -> bool:
    """Record the toolchain of ``facts`` (detected from ``started_ns`` on, ``time.time_ns()``) with
    the stat key of everything it was read from. A file modified since detection began (or a
    second before: coarse timestamps) may have changed under it, so then nothing is recorded and
    the next build detects again -- git's "racy" rule. True when recorded."""
    from buildtools.detect.sources import env_rule, fact_paths

    if not build_dir.is_dir():
        return False
    key = stat_key(fact_paths(facts, env, fallbacks))
    if any(st is not None and st[0] >= started_ns - 1_000_000_000 for _, st in key):
        forget_toolchain(build_dir)
        return False
    toolchain = toolchain_of(facts)
    rule = env_rule()
    rule["names"].append("<python>")
    digest = env_digest({**env, "<python>": sys.executable}, rule["names"], rule["prefixes"])
    data = {"format": _FACTS_FORMAT, "env_rule": rule, "env": digest, "key": key,
            "toolchain": toolchain.fingerprint, "cmake": toolchain.cmake}
    try:
        fileio.atomic_write_text(build_dir / FACTS_NAME, json.dumps(data, indent=1))
    except (OSError, KernloopError):
        return False  # only a cache: the next build detects again
    return True


def forget_toolchain(build_dir: Path) -> None:
    (build_dir / FACTS_NAME).unlink(missing_ok=True)


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = [k for k in new if old.get(k) != new.get(k)] + [k for k in old if k not in new]
    return ", ".join(keys)


def presets_reason(state: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str | None:
    """Why the presets must be written again (None: they were written from these facts)."""
    written = state.get("presets")
    if not isinstance(written, Mapping):
        return "first build in this dir"
    return "toolchain changed" if written.get("fingerprint") != fingerprint else None


def what_changed(state: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str:
    """The parts of the fingerprint that differ from the one the presets were written from
    (``"nvcc, settings"``); "" when there is none to compare with."""
    written = state.get("presets")
    old = written.get("fingerprint") if isinstance(written, Mapping) else None
    return _changed(old, fingerprint) if isinstance(old, Mapping) else ""


def cache_damaged(build_dir: Path) -> bool:
    """A CMakeCache.txt that CMake did not finish writing (empty, truncated, garbage): every build
    through it fails, so it is configured again from scratch."""
    path = build_dir / "CMakeCache.txt"
    if not path.exists():
        return False
    return "CMAKE_HOME_DIRECTORY" not in read_cmake_cache(build_dir)


def configure_reason(build_dir: Path, state: Mapping[str, Any], preset: ResolvedPreset, fingerprint: Mapping[str, Any]) -> str | None:
    """Why the build dir must be configured again (None: it need not)."""
    configured = state.get("configured", state)  # (the flat form is a state from before 0.1.1)
    if not (build_dir / "CMakeCache.txt").exists():
        return "no CMake cache yet"
    if cache_damaged(build_dir):
        return "the CMake cache is empty or damaged: configuring from scratch"
    if not (build_dir / "build.ninja").exists():
        return "no build.ninja"
    if configured.get("fingerprint") != fingerprint:
        return "the toolchain changed"
    if configured.get("preset") != preset.digest:
        return f"preset {preset.name!r} changed"
    return None


def needs_fresh(build_dir: Path, state: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> bool:
    """``cmake --fresh``: a new toolchain must not meet a stale cache, nor a damaged cache be reused."""
    configured = state.get("configured", state)
    previous = configured.get("fingerprint")
    return cache_damaged(build_dir) or (bool(previous) and previous != fingerprint)


def _outputs_digest(log: Mapping[str, Any]) -> str:
    """What ninja last built, from its log (``output -> LogEntry``); CMake's utility targets
    (``install.util``: a plain ``--target install`` run) build nothing that is installed."""
    items = sorted((out, e.mtime, e.cmdhash) for out, e in log.items() if not out.endswith(UTILITY_SUFFIX))
    return hashlib.sha256(repr(items).encode()).hexdigest()[:32]


def inputs_digest(snapshot: Any) -> str:
    """A hash of the watched sources' snapshot (``buildtools.run.stamp.snapshot``)."""
    return hashlib.sha256(repr(snapshot).encode()).hexdigest()[:32]


def record_install(state: dict[str, Any], prefix: Path, files: tuple[Path, ...], log: Mapping[str, Any]) -> None:
    """After an install: what it installed with the stat of each file, and what ninja had built
    (``log``: ``.ninja_log`` read after the build), for :func:`install_current`."""
    state["installed"] = {"prefix": str(prefix), "outputs": _outputs_digest(log),
                          "key": stat_key([str(f) for f in files])}


def install_current(state: Mapping[str, Any], prefix: Path, log: Mapping[str, Any]) -> tuple[Path, ...] | None:
    """The installed files when the last install into ``prefix`` is still what the build dir
    holds: ninja has built nothing since (same log) and every installed file is the one that
    install wrote (same stat). None: install again."""
    record = state.get("installed")
    if not isinstance(record, Mapping) or record.get("prefix") != str(prefix) or not record.get("key"):
        return None
    if record.get("outputs") != _outputs_digest(log) or key_changes(record["key"]) is not None:
        return None
    return tuple(Path(entry[0]) for entry in record["key"])


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
    """``{"presets": {fingerprint, platform, sha}, "configured": {fingerprint, preset}}``; {} when
    missing or unreadable (then everything is done again, which is always safe)."""
    try:
        data = json.loads((build_dir / STATE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    if "configured" not in data and "fingerprint" in data:  # the flat form of 0.1.0
        data = {"presets": {"fingerprint": data["fingerprint"]}, "configured": data}
    return data


def write_state(build_dir: Path, state: Mapping[str, Any]) -> None:
    """Atomically; a rename replaces a planted symlink instead of writing through it."""
    tmp = build_dir / f"{STATE_NAME}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, build_dir / STATE_NAME)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise KernloopError(f"cannot write {build_dir / STATE_NAME}: {exc.strerror or exc}",
                            "free some disk space, or make the build directory writable") from None


def default_build_dir(source_dir: Path, preset: str) -> Path:
    return source_dir / presets.build_dir_name(preset)


@dataclass(frozen=True)
class PresetsWritten:
    facts: Facts  # what the plan was made from
    platform: str  # the plan's platform ("cuda", "cpu", a plugin's)
    changed: bool  # the file's text changed
    sha: str  # of the text now in the file
    learnable_ram: Mapping[str, float] = field(default_factory=dict)  # Plan.learnable_ram


PresetWriter = Callable[[Path, Mapping[str, str], Callable[[str], None], Mapping[str, Any]], PresetsWritten]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_presets(source_dir: Path, env: Mapping[str, str], say: Callable[[str], None],
                  previous: Mapping[str, Any]) -> PresetsWritten:
    """Detect, plan and merge our presets into CMakeUserPresets.json (the user's own kept,
    the old file backed up, one atomic write): what ``presets --force-overwrite`` does,
    since a build only gets here when the machine changed. ``previous``: what the last build
    wrote (its platform: a CUDA build is never silently replaced by a CPU-only one; its text:
    edits made since are announced with the backup that keeps them)."""
    from buildtools.session import PlanOptions, plan_for  # lazy: an up-to-date build plans nothing

    facts, plan = plan_for(PlanOptions(source_dir=source_dir, env=env))
    if previous.get("platform") == "cuda" and plan.platform.value != "cuda" and plan.platform.overridden_by is None:
        raise KernloopError(
            f"this tree was built with CUDA, but a CUDA build is not possible now ({plan.platform.reason}); "
            "not replacing the CUDA modules with CPU-only ones",
            "load the CUDA toolkit, set CUDACXX or CUDA_HOME, or pass --nvcc PATH to presets; "
            "KERNLOOP_ENABLE_CUDA=OFF builds CPU-only on purpose")
    path = source_dir / presets.FILE_NAME
    text = fileio.read_text(path)
    existing = None
    if text is not None:
        try:
            existing = presets.parse(text)
        except presets.InvalidPresets as exc:
            where = f"{path}:{exc.line}" if exc.line else str(path)
            raise KernloopError(f"{where}: {exc.message}", "fix it, or replace it: python -m buildtools presets --force-overwrite") from None
    new_text = presets.dumps(presets.merge(existing, presets.render(plan)).document, bom=presets.has_bom(text))
    if new_text != text:
        saved = fileio.atomic_write_text(path, new_text, keep_backup=True)
        if saved is not None and previous.get("sha") not in (None, _sha(text or "")):
            say(f"note: {path.name} had edits kernloop did not write; the file as it was is kept in {saved}")
    for warning in plan.warnings:
        say(f"warning: {warning}")
    return PresetsWritten(facts, plan.platform.value, new_text != text, _sha(new_text), dict(plan.learnable_ram))
