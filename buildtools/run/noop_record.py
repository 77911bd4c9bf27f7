"""What the no-op fast path (:mod:`buildtools.run.noop`) checks: written by the full path after a
successful build, from the same facts the full path's own checks use.

The key: the recorded facts' own key (the toolchain files, PATH's dirs, sys.path, detection's
code) and the facts file, pyproject.toml and the presets files (the presets fingerprint reads
them), CMakeCache.txt and build.ninja (configure), the installed modules and their stamps
(install, the import guard), the peaks log (a compile was measured), and buildtools' own code.
Besides the key, ``.ninja_log``'s size: a plain ``cmake --build`` that compiled something the
install has not seen yet appended to it (:mod:`buildtools.run.noop`). The environment:
what detection reads (``buildtools.detect.sources``), every override, and the launchers', CMake's
and ninja's variables. Nothing is recorded for a build that distributes (the cluster is checked
every build), for another target, or when the facts were not recorded (the next build detects).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Mapping

from buildtools.cache import peaks
from buildtools.cmake.file_api import read_cmake_cache
from buildtools.cmake.presets import PRESET_FILES, build_dir_name
from buildtools.detect.sources import env_rule
from buildtools.run import noop
from buildtools.run.install import InstalledFile
from buildtools.run.result import BuildResult
from buildtools.run.stamp import STAMP_NAME
from buildtools.run.state import FACTS_NAME
from buildtools.settings import OVERRIDE_ENV_VARS
from buildtools.util.lock import LOCK_NAME
from buildtools.util.stamp import stat_key

__all__ = ["write"]

_PACKAGE = Path(noop.__file__).resolve().parents[1]
_ENV_PREFIXES = ("CCACHE_", "SCCACHE_", "CMAKE_", "NINJA")  # what the launchers, CMake and ninja read
_RACY_NS = 1_000_000_000  # a file written in the last second may change again with the same stat


def _code() -> list[str]:
    return sorted(str(p) for p in [_PACKAGE, *_PACKAGE.rglob("*")] if p.suffix in ("", ".py", ".sh")
                  and "__pycache__" not in p.parts)


def write(result: BuildResult, source_dir: Path, env: Mapping[str, str], *, target: str, distributed: bool) -> None:
    """Record ``result``'s build for the fast path, when its next no-op may be answered there."""
    build_dir = result.build_dir
    if not result.ok or distributed or target != "install" or build_dir != source_dir / build_dir_name("release"):
        return
    try:
        facts_key = json.loads((build_dir / FACTS_NAME).read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    cache = read_cmake_cache(build_dir)
    ninja = cache.get("CMAKE_MAKE_PROGRAM")
    if not ninja:
        return
    edited = [str(source_dir / name) for name in (*PRESET_FILES, "pyproject.toml")]
    stamps = sorted({str(Path(f.path).parent / STAMP_NAME) for f in result.installed})
    key = stat_key([*edited, str(build_dir / FACTS_NAME), str(build_dir / "CMakeCache.txt"),
                    str(build_dir / "build.ninja"), str(build_dir / peaks.LOG_NAME),
                    *(str(f.path) for f in result.installed), *stamps, *_code()])
    if any(st is not None and st[0] >= time.time_ns() - _RACY_NS for _, st in key[:len(edited)]):
        return  # an edit within this second could keep its stat: let the next build look
    rule = env_rule()
    prefix = cache.get("CMAKE_INSTALL_PREFIX") or str(source_dir)
    steps = ["check: nothing changed since the last build, ninja -n has no work (fast path)",
             "detect: cached", "presets: up to date", "configure: not needed",
             *[s for s in result.steps if s.startswith("build: ")], f"install: up to date ({prefix})"]
    quiet = dataclasses.replace(result, elapsed_s=0.0, steps=tuple(steps), ran=(), cache=None, warnings=0,
                                installed=tuple(InstalledFile(f.path, False) for f in result.installed),
                                distributed=None, explain=None)
    head, _, rest = quiet.summary().partition("\n")
    noop.record(build_dir, source_dir=source_dir, key=[*facts_key, *key], env=env,
                env_names=[*rule["names"], *OVERRIDE_ENV_VARS, "<python>"],
                env_prefixes=[*rule["prefixes"], *_ENV_PREFIXES], ninja=ninja, lock=str(build_dir / LOCK_NAME),
                summary=head.replace(" in 0.0 s (", " in {elapsed} s (", 1) + "\n" + rest,
                summary_json=quiet.to_json())
