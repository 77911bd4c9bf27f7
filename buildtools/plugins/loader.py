"""The plugins of one plan: which are enabled, their facts, their patches, and what became of each.

Discovery and loading are :mod:`buildtools.plugins.spec`, containment :mod:`buildtools.plugins.guard`.

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

"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence, TypeVar

from buildtools.model import Facts, Plan
from buildtools.plan import planner
from buildtools.plan.platforms import Platform, select
from buildtools.plugins.guard import GuardedPlatform
from buildtools.plugins.patches import BuildtoolsVersion, Patcher, PatchError, PatchStatus, buildtools_version, gate
from buildtools.plugins.registry import POINTS, PatchEntry, Registry, find_patch_package, read_registry
from buildtools.plugins.spec import DISABLE_ENV, PluginFailure, PluginSpec, discover, load_platform, one_line
from buildtools.settings import BuildConfig, Overrides

__all__ = ["PlatformStatus", "PluginReport", "PluginSession"]

T = TypeVar("T")


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
        self._disabled[spec.name] = f"{spec.label} disabled: failed in {where}: {one_line(detail)}"

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
            notes += [f"{plugin.spec.name}: {one_line(n)}" for n in detected.notes]
        return replace(facts, extra=extra, notes=tuple(notes))

    def plan(self, facts: Facts, overrides: Overrides, config: BuildConfig) -> Plan:
        """The plan over the enabled platforms; the chosen platform's "before-planning" patches
        are applied first (the other plugins' are not: they would change a plan not theirs)."""
        def attempt() -> Plan:
            while True:
                chosen, _ = select(facts, self.platforms())
                self._selected = chosen.name
                self.apply("before-planning", only=chosen.name)
                if chosen.name in self._enabled:  # else a patch of its failed: choose again
                    return planner.make_plan(facts, overrides, config, self.platforms())  # a hook point: looked up now

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
                                                      one_line(detail))
                    self.disable(PluginFailure(entry.plugin, f"applying patch {entry.module}", detail))
                    break
                self._statuses[key] = PatchStatus(entry.plugin, entry.module, entry.target, point, "applied",
                                                  f"buildtools {self.version.text} in {entry.buildtools}")

    def _pending(self, entry: PatchEntry) -> PatchStatus:
        """The status of a patch that was never reached: why."""
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

