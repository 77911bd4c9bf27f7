"""Frozen data as plain JSON (for --json output and the build state)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from buildtools.util.secrets import redact

__all__ = ["to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Dataclasses/Paths/tuples -> plain JSON types (for --json output and the build state); fields
    marked secret are left out and URL passwords masked."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.metadata.get("secret")}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, str):
        return redact(obj)  # JSON output is pasted into issues and CI logs: no URL password
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    return obj
