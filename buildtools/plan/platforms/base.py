"""The small interface through which a build platform (CUDA, CPU, a plugin's ROCm...) shapes a plan.

The planner (``buildtools.plan.planner``) owns everything generic: cores, RAM, job pools,
launcher choice, build type. A platform contributes only what depends on the
device toolchain:

- facts of its own, found after the core detection (:meth:`Platform.detect`, into ``Facts.extra``),
- whether it can build on these facts (:meth:`Platform.unavailable`),
- its device decisions: arch list (its compiler's arch spelling and checks) and per-job device
  threads (:meth:`Platform.plan_device`),
- the peak RAM of its heaviest TU kind (:meth:`Platform.job_ram`),
- which of its languages a compiler launcher may wrap (:meth:`Platform.launcher_languages`) and what it adds
  to the launcher's environment (:meth:`Platform.launcher_environment`),
- its CMake cache variables (:meth:`Platform.cache_variables`).

``detect`` is the only hook that may touch the machine (through ``buildtools.util.proc``); the
others are pure: they read facts and return values. CUDA and CPU are built in; other
platforms are plugins (entry point group ``kernloop.platforms``, see ``buildtools.plugins.loader``
and docs/plugins.md), loaded and guarded the same way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Mapping

from buildtools.model import Decision, Detected, DevicePlan, Facts, Launcher, Override, Program
from buildtools.settings import BuildConfig, Overrides

__all__ = ["Decision", "Override", "DevicePlan", "Detected", "Platform", "DEFAULT_PRIORITY"]


# Platforms are tried by descending priority; the first that can build is used.
DEFAULT_PRIORITY = 50


class Platform(ABC):
    """A build platform: a stateless object, built in or loaded from a plugin's entry point."""

    name: ClassVar[str]  # "cuda", "cpu"; a plugin's entry point name
    # How its device threads are called in reasons and flags ("nvcc-threads"); None: no device threads.
    threads_label: ClassVar[str | None] = None
    # CUDA 100, plugins 50 unless they say otherwise, CPU 0 (the fallback, always last).
    priority: ClassVar[int] = DEFAULT_PRIORITY

    def detect(self, facts: Facts, env: Mapping[str, str]) -> Detected | None:
        """This platform's own facts, probed after the core detection (which ``facts`` holds).

        May run programs (through ``buildtools.util.proc``) and read ``env``; nothing else may.
        None: nothing to contribute (the built-ins find everything they need in the core facts).
        """
        return None

    @abstractmethod
    def unavailable(self, facts: Facts) -> str | None:
        """None if this platform can build on ``facts``, else why not (one short phrase)."""

    @abstractmethod
    def plan_device(self, facts: Facts, overrides: Overrides, config: BuildConfig, cores: int) -> DevicePlan:
        """Arch list and device threads. May raise KernloopError for an unusable override."""

    def job_ram(self, config: BuildConfig, threads: int) -> tuple[float, str] | None:
        """Peak GiB of this platform's heaviest device TU with ``threads``, and how it was computed."""
        return None

    def launcher_languages(self, facts: Facts, launcher: Program) -> tuple[tuple[str, ...], str | None]:
        """The device languages ``launcher`` may wrap, and a warning when it may not."""
        return (), None

    def launcher_environment(self, facts: Facts, launcher: Launcher) -> Mapping[str, str]:
        """Variables this platform adds to the compiler launcher's environment (e.g. files a ROCm
        update changes, for ``CCACHE_EXTRAFILES``); merged over the planner's, passed to every build."""
        return {}

    @abstractmethod
    def cache_variables(self, facts: Facts, device: DevicePlan) -> Mapping[str, str]:
        """This platform's CMake cache variables (always including its enable switch)."""
