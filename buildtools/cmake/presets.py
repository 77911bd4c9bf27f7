"""Render a :class:`~buildtools.plan.planner.Plan` as ``CMakeUserPresets.json`` and merge it with an existing file.

Pure: dicts in, dicts out. Reading and writing files is ``buildtools.util.fileio``'s job.

Our presets are identified by name (:func:`our_names`); on merge they replace
presets of the same name and kind, and everything else in the user's file (their
presets, ``include``, ``vendor``, unknown keys) is kept as it was.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from buildtools.errors import KernloopError
from buildtools.model import BUILD_TYPES, Plan
from buildtools.versions import CMAKE_MIN

__all__ = [
    "FILE_NAME",
    "PRESET_FILES",
    "ResolvedPreset",
    "resolve_preset",
    "build_dir_name",
    "expand_env_macros",
    "has_bom",
    "PRESETS_VERSION",
    "BASE_PRESET",
    "PRESET_KINDS",
    "InvalidPresets",
    "MergeResult",
    "preset_names",
    "render",
    "our_names",
    "conflicts",
    "merge",
    "parse",
    "dumps",
]

FILE_NAME = "CMakeUserPresets.json"
PRESET_FILES = ("CMakePresets.json", FILE_NAME)  # what CMake reads, in its order
PRESETS_VERSION = 6  # workflow presets need 6; CMake >= 3.25 reads it (we require versions.CMAKE_MIN)
BASE_PRESET = "kernloop-base"
PRESET_KINDS = ("configurePresets", "buildPresets", "testPresets", "packagePresets", "workflowPresets")
_SOURCE_DIR = "${sourceDir}"


class InvalidPresets(ValueError):
    """The existing file is not a presets document we can merge into. ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class MergeResult:
    document: dict[str, Any]
    replaced: tuple[str, ...]  # "configurePresets/release", ... ours that were already there
    kept: tuple[str, ...]  # the user's presets, by name


def expand_env_macros(values: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """``$env{NAME}`` / ``$penv{NAME}`` in ``values`` replaced from ``env``, as CMake does for a
    preset's environment (an unset variable is empty)."""
    return {k: re.sub(r"\$p?env\{(\w+)\}", lambda m: env.get(m[1], ""), v) for k, v in values.items()}


def build_dir_name(preset: str) -> str:
    """The build dir our presets give ``preset``, relative to the source dir."""
    return f"cmake-build-{preset}"


def preset_names(plan: Plan) -> tuple[str, ...]:
    """The visible configure/build/workflow presets, e.g. ("release", "relwithdebinfo", "debug")."""
    types = [t for t in BUILD_TYPES[:3]]
    if plan.build_type.value not in types:
        types.append(plan.build_type.value)
    return tuple(t.lower() for t in types)


_LITERAL_DOLLAR = re.compile(r"\$(?!p?env\{\w+\})")


def _macro(value: str, plan: Plan) -> str:
    # Values naming the source dir itself are written as ${sourceDir}, so the file survives a move.
    # Any other '$' is literal (a path like /src/$HOME-copy) and written as CMake's ${dollar}; only
    # the $env{NAME} references the plan makes (secrets kept out of the file) stay macros.
    if value == str(plan.source_dir):
        return _SOURCE_DIR
    return _LITERAL_DOLLAR.sub("${dollar}", value)


def render(plan: Plan) -> dict[str, Any]:
    """Our presets document: a hidden base preset plus one configure/build/workflow preset per type."""
    cache = {name: _macro(value, plan) for name, value in plan.cache_variables.items()}
    cache["CMAKE_INSTALL_PREFIX"] = _SOURCE_DIR  # the .so files land in the source package
    base: dict[str, Any] = {
        "name": BASE_PRESET,
        "hidden": True,
        "displayName": f"kernloop base ({plan.platform.value.upper()}; generated, do not edit)",
        "generator": "Ninja",
        "cacheVariables": dict(sorted(cache.items())),
    }
    if plan.environment:
        base["environment"] = {k: _macro(v, plan) for k, v in sorted(plan.environment.items())}
    configure = [base]
    build = []
    workflow = []
    for name in preset_names(plan):
        build_type = next(t for t in BUILD_TYPES if t.lower() == name)
        configure.append({
            "name": name,
            "displayName": f"{build_type} ({plan.platform.value.upper()})",
            "inherits": BASE_PRESET,
            "binaryDir": f"{_SOURCE_DIR}/{build_dir_name(name)}",
            "cacheVariables": {"CMAKE_BUILD_TYPE": build_type},
        })
        build.append({
            "name": name,
            "displayName": f"{build_type}: build and install into the source tree",
            "configurePreset": name,
            "jobs": plan.jobs.value,
            "targets": ["install"],
        })
        workflow.append({
            "name": name,
            "displayName": f"{build_type}: configure, build, install",
            "steps": [{"type": "configure", "name": name}, {"type": "build", "name": name}],
        })
    return {
        "version": PRESETS_VERSION,
        "cmakeMinimumRequired": dict(zip(("major", "minor", "patch"), (*CMAKE_MIN.release, 0, 0))),
        "configurePresets": configure,
        "buildPresets": build,
        "workflowPresets": workflow,
    }


def our_names(ours: Mapping[str, Any]) -> dict[str, set[str]]:
    """kind -> names of the presets in ``ours``."""
    return {kind: {p["name"] for p in ours.get(kind, [])} for kind in PRESET_KINDS if ours.get(kind)}


def _check_structure(existing: Mapping[str, Any]) -> None:
    if not isinstance(existing, dict):
        raise InvalidPresets("the top level is not a JSON object")
    for kind in PRESET_KINDS:
        items = existing.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            raise InvalidPresets(f"{kind} is not a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidPresets(f"{kind}[{i}] has no name")


def conflicts(existing: Mapping[str, Any], ours: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of presets in ``existing`` that ``ours`` would replace, e.g. ("release", "kernloop-base")."""
    _check_structure(existing)
    mine = our_names(ours)
    found: list[str] = []
    for kind, names in mine.items():
        for item in existing.get(kind) or []:
            if item["name"] in names and item["name"] not in found:
                found.append(item["name"])
    return tuple(found)


def merge(existing: Mapping[str, Any] | None, ours: Mapping[str, Any]) -> MergeResult:
    """``existing`` with our presets replaced by name (in place, keeping the user's order) and the
    rest appended. The user's presets and keys are kept; the version is the higher of the two."""
    if existing is None:
        return MergeResult(json.loads(json.dumps(ours)), (), ())
    _check_structure(existing)
    doc: dict[str, Any] = json.loads(json.dumps(existing))  # deep copy; the input stays untouched
    replaced: list[str] = []
    kept: list[str] = []
    for kind in PRESET_KINDS:
        new_items = list(ours.get(kind) or [])
        by_name = {p["name"]: p for p in new_items}
        old_items = doc.get(kind) or []
        out = []
        for item in old_items:
            if item["name"] in by_name:
                out.append(by_name.pop(item["name"]))
                replaced.append(f"{kind}/{item['name']}")
            else:
                out.append(item)
                kept.append(item["name"])
        out += [p for p in new_items if p["name"] in by_name]
        if out:
            doc[kind] = out
    version = existing.get("version")
    doc["version"] = max(version, ours["version"]) if isinstance(version, int) else ours["version"]
    if "cmakeMinimumRequired" not in doc:
        doc["cmakeMinimumRequired"] = dict(ours["cmakeMinimumRequired"])
    # Keep "version" first, as CMake's own files do.
    ordered = {"version": doc.pop("version"), **doc}
    return MergeResult(ordered, tuple(replaced), tuple(dict.fromkeys(kept)))


BOM = "\ufeff"


def has_bom(text: str | None) -> bool:
    """The file starts with a UTF-8 byte order mark (some editors write one; CMake reads it)."""
    return bool(text) and text.startswith(BOM)


def parse(text: str) -> dict[str, Any]:
    """JSON text -> presets document; InvalidPresets (with the line) when it is not one. A leading
    byte order mark is read as CMake reads it: as nothing."""
    try:
        doc = json.loads(text.removeprefix(BOM))
    except json.JSONDecodeError as exc:
        raise InvalidPresets(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", exc.lineno) from None
    _check_structure(doc)
    return doc


def dumps(doc: Mapping[str, Any], *, bom: bool = False) -> str:
    """The document as the file's text; ``bom`` keeps a byte order mark the file had."""
    return (BOM if bom else "") + json.dumps(doc, indent=2) + "\n"


# -- reading back what CMake will use ----------------------------------------------------------


@dataclass(frozen=True)
class ResolvedPreset:
    name: str
    binary_dir: Path
    digest: str  # of everything that feeds the configure step (after inheritance)
    has_build_preset: bool
    environment: Mapping[str, str] = field(default_factory=dict)  # the preset's own, macros expanded


def _load_presets(source_dir: Path) -> list[dict[str, Any]]:
    docs = []
    for fname in PRESET_FILES:
        path = source_dir / fname
        if not path.exists():
            continue
        try:
            docs.append(json.loads(path.read_text(encoding="utf-8").removeprefix(BOM)))
        except (OSError, ValueError) as exc:
            raise KernloopError(f"cannot read {path}: {exc}", "fix the file, or regenerate it: python -m buildtools presets --force-overwrite") from None
    return docs


def _expand(value: str, source_dir: Path, preset: str) -> str:
    return (
        value.replace("${sourceDir}", str(source_dir))
        .replace("${sourceParentDir}", str(source_dir.parent))
        .replace("${sourceDirName}", source_dir.name)
        .replace("${presetName}", preset)
        .replace("${dollar}", "$")
    )


def resolve_preset(source_dir: Path, name: str) -> ResolvedPreset | None:
    """The configure preset ``name`` with its ``inherits`` applied; None if no such preset.

    Only what decides where and how to configure is resolved (binaryDir, generator,
    cacheVariables, environment, toolchain); ``include`` files are not followed.
    """
    docs = _load_presets(source_dir)
    try:
        return _resolve(docs, source_dir, name)
    except (TypeError, AttributeError, ValueError, RecursionError) as exc:  # valid JSON, not valid presets
        raise KernloopError(f"{source_dir / FILE_NAME} (or {PRESET_FILES[0]}): preset {name!r} cannot be read "
                            f"({type(exc).__name__}: {exc})", "fix it, or regenerate: python -m buildtools presets "
                            "--force-overwrite") from None


def _resolve(docs: list[Any], source_dir: Path, name: str) -> ResolvedPreset | None:
    docs = [d for d in docs if isinstance(d, dict)]
    configure = {p.get("name"): p for d in docs for p in d.get("configurePresets", []) if isinstance(p, dict)}
    builds = {p.get("name") for d in docs for p in d.get("buildPresets", []) if isinstance(p, dict)}
    if name not in configure:
        return None

    def merged(pname: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if pname in seen or pname not in configure:
            return {}
        preset = configure[pname]
        parents = preset.get("inherits", [])
        parents = [parents] if isinstance(parents, str) else list(parents)
        out: dict[str, Any] = {"cacheVariables": {}, "environment": {}}
        for parent in reversed(parents):  # the first parent wins, as in CMake
            base = merged(parent, (*seen, pname))
            for key, value in base.items():
                if key in ("cacheVariables", "environment"):
                    out[key].update(value)
                else:
                    out[key] = value
        for key, value in preset.items():
            if key in ("cacheVariables", "environment"):
                out[key].update(value or {})
            elif key not in ("name", "inherits", "hidden", "displayName", "description"):
                out[key] = value
        return out

    full = merged(name)
    binary = full.get("binaryDir")
    if not binary:
        raise KernloopError(f"configure preset {name!r} has no binaryDir", "add one, or regenerate: python -m buildtools presets --force-overwrite")
    binary_dir = Path(_expand(str(binary), source_dir, name))
    if not binary_dir.is_absolute():
        binary_dir = source_dir / binary_dir
    digest = hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:16]
    environment = {str(k): _expand(str(v), source_dir, name) for k, v in full["environment"].items() if v is not None}
    return ResolvedPreset(name, binary_dir, digest, name in builds, environment)
