"""What CMake itself says about a configured build dir: its cache.

The runner, doctor and the pip backend ask here instead of each reading ``CMakeCache.txt``.
"""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["read_cmake_cache"]


def read_cmake_cache(build_dir: Path) -> dict[str, str]:
    """``NAME -> value`` from ``CMakeCache.txt`` ({} when there is none)."""
    try:
        text = (Path(build_dir) / "CMakeCache.txt").read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "//")):
            continue
        m = re.match(r"^([^:=]+)(?::[A-Z_]+)?=(.*)$", line)
        if m:
            out[m[1]] = m[2]
    return out
