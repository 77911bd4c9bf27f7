"""The CPU platform: always available; builds the C++ kernels only."""
from __future__ import annotations

from typing import Mapping

from buildtools.plan.platforms.base import DevicePlan, Platform

from buildtools.model import Facts
from buildtools.settings import BuildConfig, Overrides

__all__ = ["CpuPlatform"]


class CpuPlatform(Platform):
    name = "cpu"
    priority = 0  # the fallback: tried last

    def unavailable(self, facts: Facts) -> str | None:
        return None

    def plan_device(self, facts: Facts, overrides: Overrides, config: BuildConfig, cores: int) -> DevicePlan:
        ignored = [o.source for o in (overrides.archs, overrides.device_threads) if o is not None]
        return DevicePlan(warnings=tuple(f"{src} ignored: this is a CPU-only plan" for src in ignored))

    def cache_variables(self, facts: Facts, device: DevicePlan) -> Mapping[str, str]:
        # The one CUDA variable a CPU plan sets: the switch that keeps CUDA out of the build.
        return {"KERNLOOP_ENABLE_CUDA": "OFF"}
