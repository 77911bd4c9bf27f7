"""Applying a plugin's patches: the version gate, the target lookup, wrap and undo.

The version gate compares ``buildtools.__version__`` with the entry's ``buildtools`` specifier;
``KERNLOOP_BUILDTOOLS_VERSION`` replaces the version for a patched development copy. Registries
(what a patch is, why, and until when) are :mod:`buildtools.plugins.registry`.
"""
from __future__ import annotations

import functools
import importlib
import types
from dataclasses import dataclass
from typing import Any, Mapping

from buildtools import __version__
from buildtools.errors import KernloopError
from buildtools.plugins.registry import HOOK_POINTS, REGISTRY_NAME, PatchEntry, PatchPackage, read_registry
from buildtools.plugins.spec import PluginFailure

__all__ = ["VERSION_ENV", "PatchStatus", "BuildtoolsVersion", "PatchError", "Patcher", "resolve_target", "check",
           "buildtools_version", "gate"]

VERSION_ENV = "KERNLOOP_BUILDTOOLS_VERSION"


class PatchError(Exception):
    """A patch that cannot be applied (no ``wrap``, a target that is not a hook point)."""


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
    """``"buildtools.plan.planner.choose_launcher"`` -> (the buildtools.plan.planner module, "choose_launcher");
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
        if entry.target not in HOOK_POINTS:
            raise PatchError(f"target {entry.target} is not a hook point (allowed: {', '.join(HOOK_POINTS)})")
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
