"""The small interface through which a build platform (CUDA, CPU; later ROCm...) shapes a plan.

The planner (``buildtools.plan``) owns everything generic: cores, RAM, job pools,
launcher choice, build type. A platform contributes only what depends on the
device toolchain:

- whether it can build on these facts (:meth:`Platform.unavailable`),
- its device decisions: arch list and per-job device threads (:meth:`Platform.plan_device`),
- the peak RAM of its heaviest TU kind (:meth:`Platform.job_ram`),
- which of its languages a compiler launcher may wrap (:meth:`Platform.launcher_languages`),
- its CMake cache variables (:meth:`Platform.cache_variables`).

Platforms are pure: they read facts and return values, never touch the machine.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, Mapping, TypeVar

if TYPE_CHECKING:  # annotations only; plan.py imports this module
    from ..config import BuildConfig
    from ..facts import Facts, Program
    from ..plan import Overrides

__all__ = ["Decision", "Override", "DevicePlan", "Platform"]

T = TypeVar("T")


@dataclass(frozen=True)
class Override(Generic[T]):
    """A value the user forced, and where it came from (``"--jobs"``, ``"MAX_JOBS"``)."""

    value: T
    source: str


@dataclass(frozen=True)
class Decision(Generic[T]):
    """One planned value with the reason a user can check, e.g.
    ``jobs=6: min(cores 12 / nvcc-threads 2, RAM 14.2 GiB / 2.0 GiB per job)``."""

    value: T
    reason: str
    overridden_by: str | None = None  # the flag/env var that forced it, if any


@dataclass(frozen=True)
class DevicePlan:
    archs: Decision[tuple[str, ...]] | None = None  # e.g. ("8.0", "9.0+PTX"); None: no device code
    threads: Decision[int] | None = None  # device compiler threads per job (NVCC_THREADS)
    warnings: tuple[str, ...] = ()


class Platform(ABC):
    """A build platform. Subclasses are stateless singletons registered in ``buildtools.platforms``."""

    name: ClassVar[str]  # "cuda", "cpu"
    # How its device threads are called in reasons and flags ("nvcc-threads"); None: no device threads.
    threads_label: ClassVar[str | None] = None

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

    @abstractmethod
    def cache_variables(self, facts: Facts, device: DevicePlan) -> Mapping[str, str]:
        """This platform's CMake cache variables (always including its enable switch)."""
