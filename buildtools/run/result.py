"""What a build did: the steps and why, TUs rebuilt, cache hits, installed files; as text or JSON."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildtools.cache import dist_runtime
from buildtools.cache import launcher as ccache
from buildtools.cmake import ninja
from buildtools.cmake.explain import Explained
from buildtools.run.install import InstalledFile

__all__ = ["BuildResult", "failure_text"]


def failure_text(headline: str, diag: ninja.Diagnostic | None) -> str:
    """``error: <step> failed (...): <first error>[ -- fix]``, then the lines that explain it."""
    if diag is None:
        return f"error: {headline}"
    text = f"error: {headline}: {diag.headline}" + (f" -- {diag.hint}" if diag.hint else "")
    body = [] if diag.message.startswith("CMake Error") else list(diag.context)
    if diag.target:
        body.append(f"(while building {diag.target})")
    return "\n".join([text, *body])


@dataclass(frozen=True)
class BuildResult:
    ok: bool
    preset: str
    build_dir: Path
    log_path: Path
    elapsed_s: float
    steps: tuple[str, ...]  # "presets: ...", "configure: ...", what ran and why
    ran: tuple[ninja.LogEntry, ...] = ()
    cache: ccache.CacheStats | None = None
    installed: tuple[InstalledFile, ...] = ()
    failure: str | None = None  # what to show when not ok
    warnings: int = 0
    distributed: dist_runtime.DistCounts | None = None  # with distributed compile
    explain: tuple[Explained, ...] | None = None  # with --explain: why each TU was rebuilt

    @property
    def rebuilt_sources(self) -> tuple[str, ...]:
        return tuple(ninja.source_of(e.output) for e in self.ran if ninja.is_translation_unit(e.output))

    @property
    def linked(self) -> tuple[str, ...]:
        return tuple(e.output for e in self.ran if re.search(r"\.(so|dylib|dll|a|pyd)$", e.output))

    def summary(self) -> str:
        lines = [f"{'built' if self.ok else 'FAILED'}: preset {self.preset} in {self.elapsed_s:.1f} s ({self.build_dir})"]
        lines += [f"  {s}" for s in self.steps]
        tus = self.rebuilt_sources
        lines.append(f"  TUs rebuilt: {len(tus)}" + (f" ({', '.join(tus[:6])}{', ...' if len(tus) > 6 else ''})" if tus else ""))
        if self.linked:
            lines.append(f"  linked: {', '.join(Path(p).name for p in self.linked)}")
        if self.cache is not None:
            lines.append(f"  compiler cache: {self.cache.describe()}")
            if (remote_warning := self.cache.remote_warning()) is not None:
                lines.append(f"warning: {remote_warning}")
        if self.distributed is not None:
            lines.append(f"  {self.distributed.describe()}")
            if (dist_warning := self.distributed.warning()) is not None:
                lines.append(f"warning: {dist_warning}")
        if self.explain is not None:
            lines += [f"  why: {e.line()}" for e in self.explain]
        slow = ninja.slowest(self.ran, 5)
        if slow and len(tus) > 1:
            lines.append("  slowest TUs: " + ", ".join(f"{ninja.source_of(e.output)} {e.duration_ms / 1000:.1f}s" for e in slow))
        if self.installed:
            changed = [f for f in self.installed if f.changed]
            lines.append(f"  installed ({len(changed)} updated, {len(self.installed) - len(changed)} unchanged):")
            lines += [f"    {f.path}{'' if f.changed else ' (unchanged)'}" for f in self.installed]
        if self.warnings:
            lines.append(f"  compiler warnings: {self.warnings} (see {self.log_path})")
        if not self.ok and self.failure:
            lines.append("")
            lines.append(self.failure)
            lines.append(f"full log: {self.log_path}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "preset": self.preset,
            "build_dir": str(self.build_dir),
            "log": str(self.log_path),
            "elapsed_s": round(self.elapsed_s, 3),
            "steps": {name: detail for name, _, detail in (st.partition(": ") for st in self.steps)},
            "ran": [e.output for e in self.ran],
            "rebuilt": list(self.rebuilt_sources),
            "linked": list(self.linked),
            "cache": None if self.cache is None else {
                "tool": self.cache.tool, "hits": self.cache.hits, "misses": self.cache.misses,
                "uncacheable": self.cache.uncacheable, "hit_rate": self.cache.hit_rate,
                "remote": self.cache.remote, "local_hits": self.cache.local_hits,
                "remote_hits": self.cache.remote_hits, "remote_errors": self.cache.remote_errors,
                "warning": self.cache.remote_warning(),
            },
            "slowest": [{"source": ninja.source_of(e.output), "seconds": e.duration_ms / 1000} for e in ninja.slowest(self.ran, 5)],
            "installed": [{"path": str(f.path), "changed": f.changed} for f in self.installed],
            "distributed": None if self.distributed is None else {
                **self.distributed.to_json(), "warning": self.distributed.warning()},
            "failure": self.failure,
            "warnings": self.warnings,
            **({} if self.explain is None else {"explain": [
                {"output": e.output, "source": e.source, "reason": e.reason, "cache": e.cache} for e in self.explain]}),
        }
