"""Platform plugins: discovery, loading, containment, and their patches for one plan.

A platform is a :class:`~buildtools.plan.platforms.base.Platform` named by an entry point in the group
``kernloop.platforms`` (``rocm = "kernloop_rocm:RocmPlatform"``). CUDA and CPU are built in: they
are described by the same kind of entry point (:data:`BUILTINS`) and go through the same loader
and guard; they are not registered in pyproject.toml because buildtools runs from the source tree
(``tools/generate_presets.py``, the pip backend's ``backend-path``), where no distribution
metadata exists, and is not part of the kernloop wheel.

A plugin that fails -- at import, when loaded, or in any hook or patch -- is reported in one line
that names it and is disabled for the run; the plan is made without it. KernloopErrors from a
hook are user errors (a bad ``--arch``) and propagate as they are.

:class:`PluginSession` is the context a plan is made in (``buildtools.session.plan_for``)::

    with PluginSession(env) as plugins:
        plugins.apply("before-detection")
        facts = plugins.contribute(plugins.run(detect_all, options))
        plan = plugins.plan(facts, overrides, config)      # applies "before-planning" patches
        facts, plan = plugins.finish(facts, plan)
    # every patch is undone here

Discovery reads only the ``entry_points.txt`` files on ``sys.path`` unless one names the group:
importing ``importlib.metadata`` adds 30-60 ms to a ~200 ms generator run here, so it is imported
only when there is a plugin to load (or an unusual path entry it alone can read).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field, replace
from importlib.machinery import PathFinder
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from buildtools.errors import KernloopError
from buildtools.model import Decision, Detected, DevicePlan
from buildtools.plan.platforms import Platform, select

if TYPE_CHECKING:
    from buildtools.settings import BuildConfig
    from buildtools.model import Facts, Program
    from buildtools.plugins.patches import BuildtoolsVersion, PatchEntry, PatchStatus, Registry
    from buildtools.settings import Overrides
    from buildtools.model import Plan

__all__ = [
    "GROUP",
    "DISABLE_ENV",
    "BUILTINS",
    "PluginSpec",
    "PluginFailure",
    "GuardedPlatform",
    "PlatformStatus",
    "PluginReport",
    "PluginSession",
    "discover",
    "load_platform",
]

GROUP = "kernloop.platforms"
DISABLE_ENV = "KERNLOOP_DISABLE_PLUGINS"  # comma-separated platform names to leave out

T = TypeVar("T")


@dataclass(frozen=True)
class PluginSpec:
    """One entry point of the group: ``name = value`` from distribution ``dist``."""

    name: str
    value: str  # "module:attr"
    dist: str  # "kernloop-rocm 0.1.0"; "built-in" for CUDA and CPU
    builtin: bool = False

    @property
    def label(self) -> str:
        if self.builtin:
            return f"built-in platform '{self.name}'"
        return f"platform plugin '{self.name}' ({self.dist})"

    @property
    def top_package(self) -> str:
        return self.value.split(":", 1)[0].strip().split(".", 1)[0]


BUILTINS: tuple[PluginSpec, ...] = (
    PluginSpec("cuda", "buildtools.plan.platforms.cuda:CudaPlatform", "built-in", builtin=True),
    PluginSpec("cpu", "buildtools.plan.platforms.cpu:CpuPlatform", "built-in", builtin=True),
)


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PluginFailure(KernloopError):
    """A plugin raised where it must not. The session disables it and plans again without it; a
    failure that escapes anyway still reaches the user as one line."""

    def __init__(self, name: str, where: str, exc: BaseException | str) -> None:
        detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.name = name
        self.where = where
        self.detail = _one_line(detail)
        super().__init__(f"platform '{name}' failed in {where}: {self.detail}",
                         f"{DISABLE_ENV}={name} leaves it out")


# -- discovery ---------------------------------------------------------------------------------------
def _may_have_entry_points(path: Sequence[str]) -> bool:
    """True when importlib.metadata could find an entry point of :data:`GROUP` on ``path``."""
    if any(f is not PathFinder and hasattr(f, "find_distributions") for f in sys.meta_path):
        return True  # a custom finder supplies distributions we cannot see from here
    needle = f"[{GROUP}]"
    for entry in path:
        directory = entry or "."
        if os.path.isfile(directory):
            return True  # a zip or egg on sys.path: let importlib.metadata read it
        try:
            listing = os.scandir(directory)
        except OSError:
            continue
        with listing:
            for item in listing:
                if not item.name.endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(item.path, "entry_points.txt"), encoding="utf-8") as fh:
                        if needle in fh.read():
                            return True
                except OSError:
                    continue
    return False


def discover() -> tuple[PluginSpec, ...]:
    """The built-ins, then every ``kernloop.platforms`` entry point on ``sys.path`` (by name)."""
    found: list[PluginSpec] = []
    if _may_have_entry_points(sys.path):
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            where = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
            found.append(PluginSpec(ep.name, ep.value, where))
    return BUILTINS + tuple(found)


_VALUE_RE = re.compile(r"^\s*(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?(\[.*\]\s*)?$")


def load_platform(spec: PluginSpec) -> Platform:
    """Import the entry point's object (like ``EntryPoint.load``) and make it a Platform.

    The object is a Platform subclass (instantiated without arguments) or instance, whose
    ``name`` is the entry point's name. Raises whatever the import raises, or PluginFailure."""
    match = _VALUE_RE.match(spec.value)
    if match is None:
        raise PluginFailure(spec.name, "loading", f"entry point value {spec.value!r} is not 'module:attr'")
    obj: Any = importlib.import_module(match.group("module"))
    for attr in (match.group("attr") or "").split(".") if match.group("attr") else ():
        obj = getattr(obj, attr)
    platform = obj() if isinstance(obj, type) and issubclass(obj, Platform) else obj
    if not isinstance(platform, Platform):
        raise PluginFailure(spec.name, "loading",
                            f"{spec.value} is {type(obj).__name__} {obj!r}, not a buildtools Platform")
    if getattr(platform, "name", None) != spec.name:
        raise PluginFailure(spec.name, "loading",
                            f"{spec.value} calls itself {getattr(platform, 'name', None)!r}; "
                            f"the entry point name is {spec.name!r}")
    return platform


# -- containment -------------------------------------------------------------------------------------
class GuardedPlatform(Platform):
    """A loaded platform whose hooks turn unexpected exceptions (and wrong result types) into a
    PluginFailure naming it. KernloopErrors pass through: they are the user's to fix."""

    def __init__(self, inner: Platform, spec: PluginSpec) -> None:
        self.inner = inner
        self.spec = spec
        self.name = spec.name  # type: ignore[misc]
        self.threads_label = self._attr("threads_label", (str, type(None)))  # type: ignore[misc]
        self.priority = self._attr("priority", (int,))  # type: ignore[misc]

    def _attr(self, name: str, types: tuple[type, ...]) -> Any:
        value = getattr(self.inner, name, None)
        if not isinstance(value, types) or isinstance(value, bool):
            raise PluginFailure(self.name, "loading", f"{name} is {value!r}")
        return value

    def _call(self, hook: str, check: Callable[[Any], bool], *args: Any) -> Any:
        try:
            result = getattr(self.inner, hook)(*args)
        except KernloopError:
            raise
        except Exception as exc:
            raise PluginFailure(self.name, hook, exc) from exc
        if not check(result):
            raise PluginFailure(self.name, hook, f"returned {type(result).__name__} {_one_line(repr(result), 80)}")
        return result

    def detect(self, facts: Facts, env: Mapping[str, str]) -> Detected | None:
        return self._call("detect", lambda r: r is None or isinstance(r, Detected), facts, env)

    def unavailable(self, facts: Facts) -> str | None:
        return self._call("unavailable", lambda r: r is None or isinstance(r, str), facts)

    def plan_device(self, facts: Facts, overrides: Overrides, config: BuildConfig, cores: int) -> DevicePlan:
        def ok(r: Any) -> bool:
            return (isinstance(r, DevicePlan) and (r.archs is None or isinstance(r.archs, Decision))
                    and (r.threads is None or isinstance(r.threads, Decision) and isinstance(r.threads.value, int)
                         and r.threads.value >= 1))
        return self._call("plan_device", ok, facts, overrides, config, cores)

    def job_ram(self, config: BuildConfig, threads: int) -> tuple[float, str] | None:
        def ok(r: Any) -> bool:
            return r is None or (isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], (int, float))
                                 and r[0] > 0 and isinstance(r[1], str))
        return self._call("job_ram", ok, config, threads)

    def launcher_languages(self, facts: Facts, launcher: Program) -> tuple[tuple[str, ...], str | None]:
        def ok(r: Any) -> bool:
            return (isinstance(r, tuple) and len(r) == 2 and isinstance(r[0], tuple)
                    and all(isinstance(x, str) for x in r[0]) and (r[1] is None or isinstance(r[1], str)))
        return self._call("launcher_languages", ok, facts, launcher)

    def cache_variables(self, facts: Facts, device: DevicePlan) -> Mapping[str, str]:
        def ok(r: Any) -> bool:
            return isinstance(r, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in r.items())
        return self._call("cache_variables", ok, facts, device)


# -- one plan's plugins -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlatformStatus:
    name: str
    source: str  # "built-in", "kernloop-rocm 0.1.0"
    state: str  # "selected", "enabled", "disabled"
    reason: str = ""  # why disabled


@dataclass(frozen=True)
class PluginReport:
    """What ``patches list`` shows: the platforms and every patch's fate in this run."""

    platforms: tuple[PlatformStatus, ...]
    patches: tuple[PatchStatus, ...]
    version: BuildtoolsVersion | None  # None when no patch needed the version gate
    selected: str | None
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class _Plugin:
    spec: PluginSpec
    platform: GuardedPlatform


class PluginSession:
    """The plugins of one plan. Use as a context manager: leaving it undoes every patch."""

    def __init__(self, env: Mapping[str, str] | None = None, specs: Sequence[PluginSpec] | None = None) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._specs = tuple(discover() if specs is None else specs)
        self._enabled: dict[str, _Plugin] = {}
        self._disabled: dict[str, str] = {}  # name -> the one-line report
        self._left_out: set[str] = set()  # named in KERNLOOP_DISABLE_PLUGINS: not reported as warnings
        self._warnings: list[str] = []
        self._statuses: dict[tuple[str, str], PatchStatus] = {}
        self._registries: dict[PluginSpec, Registry | None] = {}
        self._version: BuildtoolsVersion | None = None
        self._selected: str | None = None
        self._patcher: Any = None  # patches.Patcher, created with the first patch

        left_out = {n.strip() for n in re.split(r"[,\s]+", str(self.env.get(DISABLE_ENV, ""))) if n.strip()}
        for spec in self._specs:
            if spec.name in left_out:
                self._left_out.add(spec.name)
                self._disabled.setdefault(spec.name, f"{spec.label} left out by {DISABLE_ENV}")
                continue
            if spec.name in self._enabled or spec.name in self._disabled:
                other = self._enabled[spec.name].spec.label if spec.name in self._enabled else "another plugin"
                self._warnings.append(f"{spec.label} disabled: the name '{spec.name}' is taken by {other}")
                continue
            try:
                platform = GuardedPlatform(load_platform(spec), spec)
            except PluginFailure as failure:
                self._report_disabled(spec, failure.where, failure.detail)
                continue
            except (Exception, SystemExit) as exc:  # an import error, a plugin calling sys.exit...
                self._report_disabled(spec, "loading", f"{type(exc).__name__}: {exc}")
                continue
            self._enabled[spec.name] = _Plugin(spec, platform)

    # -- state --------------------------------------------------------------------------------------
    def __enter__(self) -> PluginSession:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._patcher is not None:
            self._patcher.undo_all()

    def _report_disabled(self, spec: PluginSpec, where: str, detail: str) -> None:
        self._disabled[spec.name] = f"{spec.label} disabled: failed in {where}: {_one_line(detail)}"

    def platforms(self) -> tuple[Platform, ...]:
        """Enabled platforms, highest priority first (discovery order among equals)."""
        ordered = sorted(self._enabled.values(), key=lambda p: -p.platform.priority)
        return tuple(p.platform for p in ordered)

    def disable(self, failure: PluginFailure) -> None:
        """Take the failing plugin out of this run and undo its patches. A failure of a plugin that
        is not enabled cannot be retried away: it is raised again."""
        plugin = self._enabled.pop(failure.name, None)
        if plugin is None:
            raise failure
        self._report_disabled(plugin.spec, failure.where, failure.detail)
        if self._patcher is not None:
            from buildtools.plugins.patches import PatchStatus

            for entry in self._patcher.undo_plugin(failure.name):
                self._statuses[(entry.plugin, entry.module)] = PatchStatus(
                    entry.plugin, entry.module, entry.target, entry.point, "undone",
                    "its plugin was disabled")
        if self._selected == failure.name:
            self._selected = None

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, again without a plugin each time one fails inside it."""
        while True:
            try:
                return fn(*args)
            except PluginFailure as failure:
                self.disable(failure)

    # -- hooks --------------------------------------------------------------------------------------
    def contribute(self, facts: Facts) -> Facts:
        """Each enabled platform's :meth:`~Platform.detect` on the core facts, into ``Facts.extra``
        (by platform name) and ``Facts.notes``."""
        extra = dict(facts.extra)
        notes = list(facts.notes)
        for plugin in list(self._enabled.values()):
            try:
                detected = plugin.platform.detect(facts, self.env)
            except PluginFailure as failure:
                self.disable(failure)
                continue
            if detected is None:
                continue
            if detected.facts is not None:
                extra[plugin.spec.name] = detected.facts
            notes += [f"{plugin.spec.name}: {_one_line(n)}" for n in detected.notes]
        return replace(facts, extra=extra, notes=tuple(notes))

    def plan(self, facts: Facts, overrides: Overrides, config: BuildConfig) -> Plan:
        """The plan over the enabled platforms; the chosen platform's "before-planning" patches
        are applied first (the other plugins' are not: they would change a plan not theirs)."""
        from buildtools.plan.planner import make_plan

        def attempt() -> Plan:
            while True:
                chosen, _ = select(facts, self.platforms())
                self._selected = chosen.name
                self.apply("before-planning", only=chosen.name)
                if chosen.name in self._enabled:  # else a patch of its failed: choose again
                    return make_plan(facts, overrides, config, self.platforms())

        return self.run(attempt)

    def finish(self, facts: Facts, plan: Plan) -> tuple[Facts, Plan]:
        """Facts without disabled plugins' contributions, with a note per applied or gated patch;
        the plan with a warning per plugin that failed or whose registry drifted."""
        extra = {k: v for k, v in facts.extra.items() if k not in self._disabled}
        report = self.report()
        notes = list(facts.notes)
        for status in report.patches:
            if status.state in ("applied", "skipped", "undone"):
                notes.append(f"patch {status.name} {status.state}: {status.target} ({status.point})"
                             + (f" -- {status.reason}" if status.reason else ""))
        warnings = tuple(plan.warnings) + report.warnings
        return (replace(facts, extra=extra, notes=tuple(notes)),
                replace(plan, warnings=tuple(dict.fromkeys(warnings))))

    # -- patches ------------------------------------------------------------------------------------
    def _registry(self, spec: PluginSpec) -> Registry | None:
        """The plugin's patch registry (None: no patch package), read once; drift is warned about
        and its modules are marked skipped."""
        if spec.builtin:
            return None  # buildtools does not patch itself
        if spec not in self._registries:
            from buildtools.plugins.patches import PatchStatus, find_patch_package, read_registry

            package = find_patch_package(spec)
            registry = read_registry(package) if package is not None else None
            self._registries[spec] = registry
            if registry is not None:
                for module, why in registry.unusable.items():
                    self._statuses[(spec.name, module)] = PatchStatus(spec.name, module, "?", "?", "skipped", why)
                if registry.problems:
                    self._warnings.append(
                        f"{spec.label}: the patch registry of {registry.package.package} does not match its "
                        f"modules ({len(registry.problems)} problem(s)); those patches are not applied "
                        "-- python -m buildtools patches check")
        return self._registries[spec]

    @property
    def version(self) -> BuildtoolsVersion:
        if self._version is None:
            from buildtools.plugins.patches import buildtools_version

            self._version = buildtools_version(self.env)
        return self._version

    def apply(self, point: str, only: str | None = None) -> None:
        """Apply the enabled plugins' patches for ``point`` (only ``only``'s, when given) that pass
        the version gate. A patch that cannot be applied disables its plugin."""
        for plugin in list(self._enabled.values()):
            if only is not None and plugin.spec.name != only:
                continue
            registry = self._registry(plugin.spec)
            if registry is None:
                continue
            from buildtools.plugins.patches import POINTS, Patcher, PatchError, PatchStatus, gate  # only with patches to apply

            assert point in POINTS, point
            for entry in registry.entries:
                key = (entry.plugin, entry.module)
                if entry.point != point or key in self._statuses:
                    continue
                why_not = gate(entry, self.version)
                if why_not is not None:
                    self._statuses[key] = PatchStatus(entry.plugin, entry.module, entry.target, point, "skipped",
                                                      why_not)
                    continue
                if self._patcher is None:
                    self._patcher = Patcher()
                try:
                    self._patcher.apply(entry)
                except (Exception, SystemExit) as exc:
                    detail = str(exc) if isinstance(exc, PatchError) else f"{type(exc).__name__}: {exc}"
                    self._statuses[key] = PatchStatus(entry.plugin, entry.module, entry.target, point, "failed",
                                                      _one_line(detail))
                    self.disable(PluginFailure(entry.plugin, f"applying patch {entry.module}", detail))
                    break
                self._statuses[key] = PatchStatus(entry.plugin, entry.module, entry.target, point, "applied",
                                                  f"buildtools {self.version.text} in {entry.buildtools}")

    def _pending(self, entry: PatchEntry) -> PatchStatus:
        """The status of a patch that was never reached: why."""
        from buildtools.plugins.patches import PatchStatus

        if entry.plugin in self._disabled:
            why = "its plugin is disabled"
        elif entry.point == "before-planning" and self._selected not in (None, entry.plugin):
            why = f"the plan uses platform '{self._selected}'"
        else:
            why = "the plan was not made"
        return PatchStatus(entry.plugin, entry.module, entry.target, entry.point, "skipped", why)

    def report(self) -> PluginReport:
        specs = [s for s in self._specs if not s.builtin and s.name not in self._left_out]
        registries = [r for r in map(self._registry, specs) if r is not None]
        statuses = dict(self._statuses)
        for registry in registries:
            for entry in registry.entries:
                statuses.setdefault((entry.plugin, entry.module), self._pending(entry))
        # Enabled platforms in the order they are tried, then the disabled ones.
        platforms = [PlatformStatus(p.name, p.spec.dist, "selected" if p.name == self._selected else "enabled")
                     for p in self.platforms() if isinstance(p, GuardedPlatform)]
        seen = {p.name for p in platforms}
        for spec in self._specs:
            if spec.name not in seen:
                seen.add(spec.name)
                platforms.append(PlatformStatus(spec.name, spec.dist, "disabled", self._disabled.get(spec.name, "")))
        failures = tuple(m for n, m in self._disabled.items() if n not in self._left_out)
        return PluginReport(
            platforms=tuple(platforms),
            patches=tuple(statuses.values()),
            version=self._version,
            selected=self._selected,
            warnings=tuple(self._warnings) + failures,
        )

