"""Containment: a loaded platform whose every hook is checked.

A plugin that raises where it must not, or returns the wrong type, becomes a
:class:`~buildtools.plugins.spec.PluginFailure` naming it; the session then disables it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from buildtools.errors import KernloopError
from buildtools.model import Decision, Detected, DevicePlan, Facts, Launcher, Program
from buildtools.plan.platforms import Platform
from buildtools.plugins.spec import PluginFailure, PluginSpec, one_line
from buildtools.settings import BuildConfig, Overrides

__all__ = ["GuardedPlatform"]


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
            raise PluginFailure(self.name, hook, f"returned {type(result).__name__} {one_line(repr(result), 80)}")
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

    def launcher_environment(self, facts: Facts, launcher: Launcher) -> Mapping[str, str]:
        def ok(r: Any) -> bool:
            return isinstance(r, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in r.items())
        return self._call("launcher_environment", ok, facts, launcher)

    def cache_variables(self, facts: Facts, device: DevicePlan) -> Mapping[str, str]:
        def ok(r: Any) -> bool:
            return isinstance(r, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in r.items())
        return self._call("cache_variables", ok, facts, device)
