"""Patches: how a platform plugin changes buildtools where the Platform interface is not enough yet.

Patching is the last resort, so every patch is documented, and the documentation is checked
against the code. A plugin's patches are the modules of the ``patch`` package next to its entry
point (``kernloop_rocm/patch/`` for ``kernloop_rocm:RocmPlatform``). ``patch/__init__.py`` holds
the registry, a literal dict named ``REGISTRY`` with one entry per module::

    REGISTRY = {
        "ccache_extrafiles": {                           # patch/ccache_extrafiles.py
            "target": "buildtools.plan.planner._choose_launcher",  # module.symbol, looked up at call time
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

The version gate compares ``buildtools.__version__`` with the entry's ``buildtools`` specifier;
``KERNLOOP_BUILDTOOLS_VERSION`` replaces the version for a patched development copy.
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from buildtools import __version__
from buildtools.errors import KernloopError

if TYPE_CHECKING:
    from buildtools.plugins.loader import PluginSpec

__all__ = [
    "POINTS",
    "FIELDS",
    "DOC_FIELDS",
    "REGISTRY_NAME",
    "VERSION_ENV",
    "PatchPackage",
    "PatchEntry",
    "Registry",
    "PatchStatus",
    "BuildtoolsVersion",
    "PatchError",
    "Patcher",
    "find_patch_package",
    "read_registry",
    "resolve_target",
    "check",
    "buildtools_version",
    "gate",
]

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
VERSION_ENV = "KERNLOOP_BUILDTOOLS_VERSION"
TARGET_ROOT = "buildtools"  # the version gate is on buildtools' version, so only buildtools is patched


class PatchError(Exception):
    """A patch that cannot be applied (no ``wrap``, a target that does not exist)."""


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


@dataclass(frozen=True)
class PatchStatus:
    plugin: str
    module: str
    target: str
    point: str
    state: str  # "applied", "skipped", "failed", "undone"
    reason: str

    @property
    def name(self) -> str:
        return f"{self.plugin}:{self.module}"


@dataclass(frozen=True)
class BuildtoolsVersion:
    text: str
    source: str  # "buildtools.__version__" or the environment variable


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
            parts = entry["target"].split(".")
            if parts[0] != TARGET_ROOT or len(parts) < 2 or not all(p.isidentifier() for p in parts):
                wrong.append(f"target {entry['target']!r} is not a {TARGET_ROOT} module.symbol")
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


# -- version gate ----------------------------------------------------------------------------------
def buildtools_version(env: Mapping[str, str]) -> BuildtoolsVersion:
    """This buildtools' version, or ``KERNLOOP_BUILDTOOLS_VERSION`` (a patched development copy)."""
    text = str(env.get(VERSION_ENV, "")).strip()
    if not text:
        return BuildtoolsVersion(__version__, "buildtools.__version__")
    from packaging.version import InvalidVersion, Version

    try:
        Version(text)
    except InvalidVersion:
        raise KernloopError(f"{VERSION_ENV}={text}: not a version",
                            f"set {VERSION_ENV} to a version such as {__version__}, or unset it") from None
    return BuildtoolsVersion(text, VERSION_ENV)


def gate(entry: PatchEntry, version: BuildtoolsVersion) -> str | None:
    """None when the patch applies to ``version``, else why it is skipped."""
    from packaging.specifiers import SpecifierSet

    # prereleases=True: a development version (0.2.0.dev3) is gated by PEP 440 ordering instead of
    # matching nothing; KERNLOOP_BUILDTOOLS_VERSION says which release a patched copy behaves like.
    if SpecifierSet(entry.buildtools).contains(version.text, prereleases=True):
        return None
    return f"buildtools {version.text} (from {version.source}) is outside {entry.buildtools}"


# -- targets ---------------------------------------------------------------------------------------
def resolve_target(target: str) -> tuple[Any, str]:
    """``"buildtools.plan.planner._choose_launcher"`` -> (the buildtools.plan.planner module, "_choose_launcher");
    ``"pkg.mod.Class.method"`` -> (Class, "method"). Raises PatchError when it does not exist."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            owner: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # not a module at this depth: try a shorter prefix
            raise
        for attr in parts[cut:-1]:
            if not hasattr(owner, attr):
                raise PatchError(f"target {target}: {module_name} has no {'.'.join(parts[cut:])}")
            owner = getattr(owner, attr)
        if not hasattr(owner, parts[-1]):
            raise PatchError(f"target {target}: {'.'.join(parts[:-1])} has no {parts[-1]}")
        return owner, parts[-1]
    raise PatchError(f"target {target}: no such module")


def check(package: PatchPackage, env: Mapping[str, str]) -> list[str]:
    """Every problem of a patch package: registry drift, and targets missing from the buildtools
    version the patches are meant for (only entries whose gate admits that version)."""
    registry = read_registry(package)
    problems = list(registry.problems)
    version = buildtools_version(env)
    for entry in registry.entries:
        if gate(entry, version) is not None:
            continue
        try:
            resolve_target(entry.target)
        except (PatchError, ImportError) as exc:
            problems.append(f"{package.package}: {REGISTRY_NAME}[{entry.module!r}]: {exc} "
                            f"(buildtools {version.text})")
    return problems


# -- applying and undoing --------------------------------------------------------------------------
@dataclass
class _Applied:
    entry: PatchEntry
    owner: Any
    attr: str
    had_own: bool  # the attribute was in owner's own __dict__ (else inherited: delete on undo)
    previous: Any
    replacement: Any


def _raised_in(exc: BaseException, code: types.CodeType) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return False


def _guarded(replacement: Any, original: Any, entry: PatchEntry) -> Any:
    """A function replacement that turns its own failures into a PluginFailure for its plugin.

    Exceptions raised inside the original propagate unchanged (callers may rely on them, e.g.
    InvalidPresets), as do KernloopErrors (user errors)."""
    if not isinstance(replacement, types.FunctionType):
        return replacement
    from buildtools.plugins.loader import PluginFailure

    code = getattr(original, "__code__", None)

    @functools.wraps(replacement)
    def patched(*args: Any, **kwargs: Any) -> Any:
        try:
            return replacement(*args, **kwargs)
        except KernloopError:
            raise
        except Exception as exc:
            if code is not None and _raised_in(exc, code):
                raise
            raise PluginFailure(entry.plugin, f"patch {entry.module}", exc) from exc

    return patched


class Patcher:
    """Applies patches and undoes them, last applied first."""

    def __init__(self) -> None:
        self._applied: list[_Applied] = []

    def apply(self, entry: PatchEntry) -> None:
        """Import the patch module, wrap the target, install the replacement. Raises PatchError
        (or whatever the module or its ``wrap`` raised); nothing is changed then."""
        module = importlib.import_module(f"{entry.package}.{entry.module}")
        wrap = getattr(module, "wrap", None)
        if not callable(wrap):
            raise PatchError(f"{module.__name__} has no wrap(original) function")
        owner, attr = resolve_target(entry.target)
        own = vars(owner)
        had_own = attr in own
        previous = own[attr] if had_own else getattr(owner, attr)
        replacement = wrap(previous)
        if replacement is None:
            raise PatchError(f"{module.__name__}.wrap returned None")
        replacement = _guarded(replacement, previous, entry)
        setattr(owner, attr, replacement)
        self._applied.append(_Applied(entry, owner, attr, had_own, previous, replacement))

    @staticmethod
    def _restore(record: _Applied) -> None:
        if record.had_own:
            setattr(record.owner, record.attr, record.previous)
        else:
            delattr(record.owner, record.attr)

    def undo_plugin(self, plugin: str) -> list[PatchEntry]:
        """Undo ``plugin``'s patches that nothing was layered on since; the rest wait for
        :meth:`undo_all`. Returns the entries undone."""
        undone = []
        for record in reversed(list(self._applied)):
            if record.entry.plugin != plugin:
                continue
            if vars(record.owner).get(record.attr) is record.replacement:
                self._restore(record)
                self._applied.remove(record)
                undone.append(record.entry)
        return undone

    def undo_all(self) -> None:
        while self._applied:
            self._restore(self._applied.pop())

    @property
    def applied(self) -> tuple[PatchEntry, ...]:
        return tuple(r.entry for r in self._applied)
