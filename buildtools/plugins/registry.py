"""Patches: how a platform plugin changes buildtools where the Platform interface is not enough yet.

Patching is the last resort, so every patch is documented, and the documentation is checked
against the code. A plugin's patches are the modules of the ``patch`` package next to its entry
point (``kernloop_rocm/patch/`` for ``kernloop_rocm:RocmPlatform``). ``patch/__init__.py`` holds
the registry, a literal dict named ``REGISTRY`` with one entry per module::

    REGISTRY = {
        "ccache_extrafiles": {                           # patch/ccache_extrafiles.py
            "target": "buildtools.plan.planner.choose_launcher",  # one of HOOK_POINTS
            "point": "before-planning",                  # or "before-detection"
            "buildtools": ">=0.1,<0.2",                  # the buildtools versions it applies to
            "why": "...",       # what goes wrong without it
            "how": "...",       # what the replacement changes
            "upstream": "...",  # the related buildtools change, or why there is none
            "removal": "...",   # when and how the patch goes away
        },
    }

A patch module defines ``wrap(original)``, returning the replacement for the target. The
registry is read without importing anything (``ast.literal_eval``), so ``patches check`` has no
side effects. The session (``buildtools.plugins.loader.PluginSession``) applies patches at their point
and undoes every one, in reverse order, when the plan is made: nothing stays patched.

A patch may target only a documented hook point (:data:`HOOK_POINTS`). This module reads and
checks registries; :mod:`buildtools.plugins.patches` gates, applies and undoes them.
"""
from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from buildtools.plugins.spec import PluginSpec

__all__ = ["POINTS", "HOOK_POINTS", "FIELDS", "DOC_FIELDS", "REGISTRY_NAME", "PatchPackage", "PatchEntry", "Registry",
           "find_patch_package", "read_registry"]

POINTS = ("before-detection", "before-planning")
# Documentation fields, with the headings they are shown under.
DOC_FIELDS = {
    "why": "Why",
    "how": "How",
    "upstream": "Related upstream change",
    "removal": "Future plan for removal",
}
FIELDS = ("target", "point", "buildtools", *DOC_FIELDS)
REGISTRY_NAME = "REGISTRY"
# The only targets a patch may wrap: public functions documented as hook points, which keep their
# name and call signature within a minor version (docs/plugins.md). Everything else in buildtools
# is internal and may change in any release. Each is looked up at call time, so a patch takes effect.
HOOK_POINTS: dict[str, str] = {
    "buildtools.detect.detect_all": "the core facts (point before-detection): add or correct facts",
    "buildtools.detect.detect_cpus": "usable cores (before-detection)",
    "buildtools.detect.detect_memory": "available RAM (before-detection)",
    "buildtools.detect.detect_gpus": "the local GPUs and their archs (before-detection)",
    "buildtools.plan.planner.choose_launcher": "the compiler launcher and its environment for one plan",
    "buildtools.plan.planner.make_plan": "the whole plan from facts, overrides and settings",
    # The built-in platforms' Platform hooks (buildtools.plan.platforms.base), e.g. CUDA's arch choice.
    **{f"buildtools.plan.platforms.{module}.{cls}.{hook}": f"the built-in {module.upper()} platform's {hook}"
       for module, cls in (("cuda", "CudaPlatform"), ("cpu", "CpuPlatform"))
       for hook in ("unavailable", "plan_device", "job_ram", "launcher_languages", "launcher_environment",
                    "cache_variables")},
}


@dataclass(frozen=True)
class PatchPackage:
    plugin: str  # the platform's name
    package: str  # import name, e.g. "kernloop_rocm.patch"
    path: Path  # its directory


@dataclass(frozen=True)
class PatchEntry:
    plugin: str
    package: str
    module: str  # "ccache_extrafiles" (patch/ccache_extrafiles.py)
    target: str
    point: str
    buildtools: str  # version specifier
    why: str
    how: str
    upstream: str
    removal: str

    @property
    def name(self) -> str:
        return f"{self.plugin}:{self.module}"


@dataclass(frozen=True)
class Registry:
    package: PatchPackage
    entries: tuple[PatchEntry, ...]  # complete entries whose module exists
    # Modules that exist but cannot be applied (no entry, an incomplete one), and why.
    unusable: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # every drift found, one line each, naming the package


# -- finding and reading a registry ----------------------------------------------------------------
def find_patch_package(spec: PluginSpec) -> PatchPackage | None:
    """The ``patch`` package beside the plugin's top-level package, located without importing it."""
    top = spec.top_package
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for location in locations:
        path = Path(location) / "patch"
        if (path / "__init__.py").is_file():
            return PatchPackage(spec.name, f"{top}.patch", path)
    return None


def _modules(path: Path) -> dict[str, Path]:
    """Patch modules in a package directory: ``name.py`` files and sub-packages (their ``__init__``)."""
    found: dict[str, Path] = {}
    for child in sorted(path.iterdir()):
        if child.name.startswith(("_", ".")):
            continue
        if child.suffix == ".py" and child.is_file():
            found[child.stem] = child
        elif child.is_dir() and (child / "__init__.py").is_file():
            found[child.name] = child / "__init__.py"
    return found


def _literal_registry(init: Path) -> tuple[Any, str | None]:
    """The literal value assigned to REGISTRY in ``init``, or (None, why not)."""
    try:
        tree = ast.parse(init.read_text(encoding="utf-8"), filename=str(init))
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"cannot read {init.name}: {exc}"
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
        if any(isinstance(t, ast.Name) and t.id == REGISTRY_NAME for t in targets):
            try:
                return ast.literal_eval(node.value), None  # type: ignore[union-attr]
            except ValueError:
                return None, f"{REGISTRY_NAME} in {init.name} is not a literal dict (no names, calls or f-strings)"
    return None, f"{init.name} defines no {REGISTRY_NAME} dict"


def _defines_wrap(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == "wrap" for n in tree.body)


def _specifier_problem(text: str) -> str | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        return f"buildtools {text!r} is not a version specifier (e.g. \">=0.1,<0.2\")"
    return None


def read_registry(package: PatchPackage) -> Registry:
    """The registry of ``package``, checked against its modules. Nothing is imported."""
    where = package.package
    modules = _modules(package.path)
    raw, problem = _literal_registry(package.path / "__init__.py")
    problems: list[str] = []
    unusable: dict[str, str] = {}
    if problem is not None or not isinstance(raw, dict):
        why = problem or f"{REGISTRY_NAME} is not a dict"
        problems.append(f"{where}: {why}")
        return Registry(package, (), {m: f"registry unreadable: {why}" for m in modules}, tuple(problems))

    entries: list[PatchEntry] = []
    for name in modules:
        if name not in raw:
            unusable[name] = f"no entry in {REGISTRY_NAME}"
            problems.append(f"{where}: patch module {modules[name].relative_to(package.path)} has no entry in "
                            f"{REGISTRY_NAME}")
    for name, entry in raw.items():
        if name not in modules:
            problems.append(f"{where}: {REGISTRY_NAME} entry {name!r} has no module ({name}.py)")
            continue
        if not isinstance(entry, dict):
            unusable[name] = "its entry is not a dict"
            problems.append(f"{where}: {REGISTRY_NAME} entry {name!r} is not a dict")
            continue
        wrong: list[str] = []
        for key in FIELDS:
            if key not in entry:
                wrong.append(f"field {key!r} is missing")
            elif not isinstance(entry[key], str) or not entry[key].strip():
                wrong.append(f"field {key!r} is empty")
        wrong += [f"unknown field {key!r}" for key in entry if key not in FIELDS]
        if not wrong:
            if entry["point"] not in POINTS:
                wrong.append(f"point {entry['point']!r} is not one of {', '.join(POINTS)}")
            if entry["target"] not in HOOK_POINTS:
                wrong.append(f"target {entry['target']!r} is not a hook point (allowed: {', '.join(HOOK_POINTS)})")
            spec_problem = _specifier_problem(entry["buildtools"])
            if spec_problem:
                wrong.append(spec_problem)
            if not _defines_wrap(modules[name]):
                wrong.append(f"{modules[name].name} defines no wrap(original) function")
        if wrong:
            unusable[name] = "; ".join(wrong)
            problems += [f"{where}: {REGISTRY_NAME}[{name!r}]: {w}" for w in wrong]
            continue
        entries.append(PatchEntry(
            plugin=package.plugin, package=package.package, module=name,
            **{key: " ".join(entry[key].split()) for key in FIELDS},
        ))
    return Registry(package, tuple(entries), unusable, tuple(problems))
