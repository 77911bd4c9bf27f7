"""Build platforms, in order of preference; the first that can build on the facts is used.

A new platform (e.g. ROCm) subclasses :class:`~buildtools.platforms.base.Platform`
and is added to :data:`PLATFORMS` ahead of the CPU fallback.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Decision, DevicePlan, Override, Platform
from .cpu import CpuPlatform
from .cuda import CudaPlatform

if TYPE_CHECKING:
    from ..facts import Facts

__all__ = ["PLATFORMS", "select", "Platform", "Decision", "DevicePlan", "Override"]

PLATFORMS: tuple[Platform, ...] = (CudaPlatform(), CpuPlatform())


def select(facts: Facts, platforms: tuple[Platform, ...] = PLATFORMS) -> tuple[Platform, str]:
    """The first platform that can build, and why it was chosen (one line)."""
    skipped = []
    for platform in platforms:
        why_not = platform.unavailable(facts)
        if why_not is None:
            if skipped:
                return platform, f"{platform.name.upper()}-only plan: " + "; ".join(skipped)
            return platform, f"{platform.name.upper()} plan"
        skipped.append(why_not)
    raise AssertionError("the CPU platform is always available")  # registry invariant, not a user error
