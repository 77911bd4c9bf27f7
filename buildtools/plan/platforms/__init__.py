"""Build platforms, in order of preference; the first that can build on the facts is used.

CUDA and CPU are built in. Other platforms (ROCm, XPU...) are plugins: a
:class:`~buildtools.plan.platforms.base.Platform` published under the entry point group
``kernloop.platforms`` (see ``buildtools.plugins.loader`` and docs/plugins.md). The session
loads built-ins and plugins through the same loader and orders them by ``priority``;
:data:`PLATFORMS` is the built-in pair, what the pure planner uses when given nothing else.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from buildtools.errors import KernloopError
from buildtools.plan.platforms.base import DEFAULT_PRIORITY, Decision, Detected, DevicePlan, Override, Platform
from buildtools.plan.platforms.cpu import CpuPlatform
from buildtools.plan.platforms.cuda import CudaPlatform

if TYPE_CHECKING:
    from buildtools.model import Facts

__all__ = ["PLATFORMS", "select", "Platform", "Decision", "DevicePlan", "Detected", "Override",
           "DEFAULT_PRIORITY"]

PLATFORMS: tuple[Platform, ...] = (CudaPlatform(), CpuPlatform())


def select(facts: Facts, platforms: tuple[Platform, ...] = PLATFORMS) -> tuple[Platform, str]:
    """The first platform that can build, and why it was chosen (one line)."""
    skipped: list[tuple[str, str]] = []
    for platform in platforms:
        why_not = platform.unavailable(facts)
        if why_not is None:
            if not skipped:
                return platform, f"{platform.name.upper()} plan"
            if platform is platforms[-1]:  # the fallback (CPU): a plan without the device code
                return platform, f"{platform.name.upper()}-only plan: " + "; ".join(w for _, w in skipped)
            return platform, f"{platform.name.upper()} plan (" + "; ".join(f"not {n}: {w}" for n, w in skipped) + ")"
        skipped.append((platform.name, why_not))
    # Only reachable when the CPU fallback itself was disabled (KERNLOOP_DISABLE_PLUGINS, or it failed).
    reasons = ": " + "; ".join(w for _, w in skipped) if skipped else ""
    raise KernloopError(f"no build platform can build here{reasons}",
                        "unset KERNLOOP_DISABLE_PLUGINS, or see the warnings above for a disabled platform")
