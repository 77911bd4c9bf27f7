"""Which platform plugins there are, and how one is loaded.

A platform is a :class:`~buildtools.plan.platforms.base.Platform` named by an entry point in the group
``kernloop.platforms`` (``rocm = "kernloop_rocm:RocmPlatform"``). CUDA and CPU are built in: they
are described by the same kind of entry point (:data:`BUILTINS`) and go through the same loader
and guard; they are not registered in pyproject.toml because buildtools runs from the source tree
(``tools/generate_presets.py``, the pip backend's ``backend-path``), where no distribution
metadata exists, and is not part of the kernloop wheel.

Discovery reads only the ``entry_points.txt`` files on ``sys.path`` unless one names the group:
importing ``importlib.metadata`` adds 30-60 ms to a ~200 ms generator run here, so it is imported
only when there is a plugin to load (or an unusual path entry it alone can read).
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from importlib.machinery import PathFinder
from typing import Any, Sequence

from buildtools.errors import KernloopError
from buildtools.plan.platforms import Platform

__all__ = ["GROUP", "DISABLE_ENV", "BUILTINS", "PluginSpec", "PluginFailure", "discover", "load_platform", "one_line"]


GROUP = "kernloop.platforms"
DISABLE_ENV = "KERNLOOP_DISABLE_PLUGINS"  # comma-separated platform names to leave out


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


def one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PluginFailure(KernloopError):
    """A plugin raised where it must not. The session disables it and plans again without it; a
    failure that escapes anyway still reaches the user as one line."""

    def __init__(self, name: str, where: str, exc: BaseException | str) -> None:
        detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.name = name
        self.where = where
        self.detail = one_line(detail)
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
