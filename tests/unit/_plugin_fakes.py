"""Plugin packages written into a temporary directory on sys.path, with a real ``.dist-info``.

importlib.metadata finds their ``kernloop.platforms`` entry points exactly as it finds those of a
pip-installed distribution (a dist-info directory on sys.path), so discovery is not faked; only
the plugin code is made up per test. Each package gets a unique name: modules stay in
``sys.modules`` after a test, and a later test must not see an earlier one's.
"""
from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_counter = itertools.count()

DEFAULT_HOOKS = {
    "detect": "return Detected(facts={'found': True}, notes=('tool found',))",
    "unavailable": "return None",
    "plan_device": "return DevicePlan(archs=Decision(('x1',), 'test'), threads=Decision(1, 'test'))",
    "job_ram": "return (0.5, 'test TU 0.5')",
    "launcher_languages": "return ('TEST',), None",
    "cache_variables": "return {'KERNLOOP_ENABLE_CUDA': 'OFF', 'TEST_PLATFORM': 'ON'}",
}
_SIGNATURES = {
    "detect": "self, facts, env",
    "unavailable": "self, facts",
    "plan_device": "self, facts, overrides, config, cores",
    "job_ram": "self, config, threads",
    "launcher_languages": "self, facts, launcher",
    "cache_variables": "self, facts, device",
}


def platform_source(name: str, priority: int = 200, header: str = "", **hooks: str) -> str:
    """A module defining ``Plat``, a Platform named ``name``; ``hooks`` replace method bodies."""
    body = dict(DEFAULT_HOOKS, **hooks)
    methods = "".join(f"    def {hook}({_SIGNATURES[hook]}):\n{textwrap.indent(code, ' ' * 8)}\n\n"
                      for hook, code in body.items())
    return (
        "from buildtools.plan.platforms.base import Decision, Detected, DevicePlan, Platform\n"
        "from buildtools.errors import KernloopError\n"
        f"{header}\n\n"
        "class Plat(Platform):\n"
        f"    name = {name!r}\n"
        f"    priority = {priority}\n\n"
        f"{methods}"
    )


@dataclass
class FakePlugin:
    name: str  # entry point (platform) name
    package: str  # top-level package
    root: Path  # the sys.path entry holding it
    dist: str

    @property
    def patch_dir(self) -> Path:
        return self.root / self.package / "patch"


def registry_source(registry: Any) -> str:
    return f"REGISTRY = {registry!r}\n"


def write_plugin(
    root: Path,
    name: str,
    source: str | None = None,
    *,
    value: str | None = None,
    patches: dict[str, str] | None = None,
    registry: Any = None,
) -> FakePlugin:
    """A package ``<unique>/__init__.py`` = ``source`` and a dist-info whose entry point
    ``name = value`` (default ``<package>:Plat``) is in the ``kernloop.platforms`` group."""
    package = f"klfake_{name.replace('-', '_')}_{next(_counter)}"
    dist = package.replace("_", "-")
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(source if source is not None else platform_source(name), encoding="utf-8")
    if patches is not None:
        (pkg / "patch").mkdir()
        (pkg / "patch" / "__init__.py").write_text(registry_source(registry or {}), encoding="utf-8")
        for module, text in patches.items():
            (pkg / "patch" / f"{module}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    info = root / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        f"[kernloop.platforms]\n{name} = {value or package + ':Plat'}\n", encoding="utf-8")
    importlib.invalidate_caches()
    return FakePlugin(name, package, root, f"{dist} 0.1")


def entry(module_target: str, point: str = "before-planning", buildtools: str = ">=0.1", **fields: str) -> dict:
    """A complete registry entry; ``fields`` override or (with "") empty a field."""
    out = {
        "target": module_target,
        "point": point,
        "buildtools": buildtools,
        "why": "the test needs it",
        "how": "wraps the target",
        "upstream": "none: a test",
        "removal": "when the test goes",
    }
    out.update(fields)
    return out


def forget_modules(prefix: str = "klfake_") -> None:
    for mod in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[mod]
