"""Compiler cache (ccache / sccache): the environment that makes hits portable, and per-build stats.

Why these settings: CMake passes absolute paths and ninja runs each compile
in the build directory. ``CCACHE_BASEDIR=<source dir>`` makes ccache hash those
paths relative to the build directory, so a second checkout or worktree of the
same sources hits too; the price is that build directories must sit at the same
depth under the source dir (``cmake-build-release``, ``cmake-build-pip``), or
``../csrc`` and ``../../csrc`` hash differently. ``CCACHE_NOHASHDIR`` keeps the
build directory out of the hash when ``-g`` would otherwise put it there, so a
RelWithDebInfo build after deleting its build dir, or the pip build after the
preset build, are hits.

Stats per build: ccache writes one record per compilation to ``CCACHE_STATSLOG``
when that is set, so a build with its own log counts exactly its own hits, even
while other builds share the cache (``--zero-stats`` would wipe theirs). sccache
has one server-wide counter set; we diff ``--show-stats --stats-format json``
before and after, which also counts anything else compiling at the same time.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from buildtools.cache.remote_runtime import errors_warning
from buildtools.util import proc

__all__ = ["CacheStats", "CacheProbe", "launcher_kind", "launcher_env", "depend_mode_env", "probe_for",
           "parse_ccache_counters", "parse_sccache_json", "parse_stats_log"]

# ccache's own switches for its depend mode; the user's setting of either wins over ours.
_DEPEND_VARS = ("CCACHE_DEPEND", "CCACHE_NODEPEND")


@dataclass(frozen=True)
class CacheStats:
    tool: str  # "ccache" | "sccache"
    hits: int
    misses: int
    uncacheable: int  # compiler calls the cache could not serve (links, unsupported options, errors)
    exact: bool  # False: a server-wide diff that may include other builds (sccache)
    # With a shared cache (buildtools.cache.remote): where the hits came from, and its failures.
    local_hits: int | None = None  # None: not split (no shared cache, or sccache did not say)
    remote_hits: int | None = None
    remote_errors: int = 0  # failed or timed-out remote operations
    remote: str | None = None  # "redis://host:6379 (read-only)"

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None

    def describe(self) -> str:
        if not self.lookups and not self.uncacheable:
            return f"{self.tool}: no compilations"
        rate = f" ({self.hit_rate:.0%})" if self.hit_rate is not None else ""
        text = f"{self.tool}: {self.hits}/{self.lookups} hits{rate}"
        if self.uncacheable:
            text += f", {self.uncacheable} not cacheable"
        if self.remote is not None:
            if self.local_hits is not None and self.remote_hits is not None:
                text += f"; local {self.local_hits}, remote {self.remote_hits} from {self.remote}"
            else:
                text += f"; shared cache {self.remote}"
        if not self.exact:
            text += " (server-wide; includes concurrent builds)"
        return text

    def remote_warning(self) -> str | None:
        """One line when the shared cache failed during the build (it never fails the build)."""
        return errors_warning(self.remote, self.remote_errors, self.tool) if self.remote is not None else None


def launcher_kind(launcher: str | os.PathLike[str] | None) -> str | None:
    """``"ccache"``/``"sccache"`` for a compiler-launcher path, else None."""
    if not launcher:
        return None
    name = Path(os.fspath(launcher).split(";")[0]).name.lower()
    if name.startswith("sccache"):
        return "sccache"
    if name.startswith("ccache"):
        return "ccache"
    return None


def launcher_env(kind: str | None, source_dir: Path, cache_dir: Path | None = None) -> dict[str, str]:
    """The environment a cached build needs so hits survive a new build directory: paths relative
    to the source dir, no build-dir hashing (hits across build trees and clones), and the cache
    dir when the project sets one."""
    if kind == "ccache":
        # ccache expands $VAR in its settings; $$ is its literal '$' (a checkout in /src/$x).
        env = {"CCACHE_BASEDIR": str(source_dir).replace("$", "$$"), "CCACHE_NOHASHDIR": "true"}
        return {**env, "CCACHE_DIR": str(cache_dir).replace("$", "$$")} if cache_dir else env
    if kind == "sccache":
        env = {"SCCACHE_BASEDIRS": str(source_dir)}
        return {**env, "SCCACHE_DIR": str(cache_dir)} if cache_dir else env
    return {}


def depend_mode_env(kind: str | None, compiles: int, cores: int, env: Mapping[str, str]) -> dict[str, str]:
    """ccache's depend mode for a build of at most ``cores`` TUs -- an edit, not a rebuild.

    On a direct-mode miss ccache runs the preprocessor to look for a preprocessed-mode hit: here
    0.18 s of a 1.5 s ``.cu`` edit and 0.5 s of the torch glue's 3 s. Depend mode keys the result
    on the compiler's own ``-MD`` file instead, so a miss costs no preprocessor pass; undoing an
    edit or switching back a branch is still a direct hit. What it gives up is the hit for an edit
    the preprocessor does not see (a comment), which then compiles. A bigger build (a flag, a
    define or a shared header changed) keeps the fallback, where that hit can be the whole build.
    """
    if kind != "ccache" or not 1 <= compiles <= cores or any(name in env for name in _DEPEND_VARS):
        return {}
    return {"CCACHE_DEPEND": "true"}


# Result counters of ccache 4.x. Everything else that counts a compiler call and
# is not a storage-level counter means "could not cache this call".
_CCACHE_HITS = ("direct_cache_hit", "preprocessed_cache_hit")
_CCACHE_MISSES = ("cache_miss",)
_CCACHE_UNCACHEABLE = (
    "autoconf_test", "bad_compiler_arguments", "bad_input_file", "bad_output_file",
    "called_for_link", "called_for_preprocessing", "compile_failed", "compiler_check_failed",
    "compiler_produced_empty_output", "compiler_produced_no_output", "compiler_produced_stdout",
    "could_not_find_compiler", "could_not_use_modules", "could_not_use_precompiled_header",
    "disabled", "error_hashing_extra_file", "internal_error", "missing_cache_file",
    "modified_input_file", "multiple_source_files", "no_input_file", "output_to_stdout",
    "preprocessor_error", "unsupported_code_directive", "unsupported_compiler_option",
    "unsupported_environment_variable", "unsupported_source_encoding", "unsupported_source_language",
)  # fmt: skip


def parse_ccache_counters(counters: Mapping[str, int], remote: str | None = None) -> CacheStats:
    """``remote``: the shared cache the build used (its hits are split into local and remote)."""
    def n(key: str) -> int:
        return int(counters.get(key, 0))

    return CacheStats(
        tool="ccache",
        hits=sum(n(k) for k in _CCACHE_HITS),
        misses=sum(n(k) for k in _CCACHE_MISSES),
        uncacheable=sum(n(k) for k in _CCACHE_UNCACHEABLE),
        exact=True,
        local_hits=n("local_storage_hit") if remote is not None else None,
        remote_hits=n("remote_storage_hit") if remote is not None else None,
        remote_errors=n("remote_storage_error") + n("remote_storage_timeout"),
        remote=remote,
    )


def parse_stats_log(text: str) -> dict[str, str]:
    """Per compilation, what ccache's stats log (``CCACHE_STATSLOG``) says: ``# <input>`` then
    its counters. ``input -> "hit"``, ``"hit (preprocessed: ...)"`` (the source, a header or
    a flag changed, the preprocessed code did not), ``"miss"``, or
    ``"not cacheable: <ccache's reason>"``; the last record of an input wins."""
    results: dict[str, str] = {}
    current: str | None = None
    counters: set[str] = set()

    def close() -> None:
        if current is None:
            return
        if "direct_cache_hit" in counters:
            results[current] = "hit"
        elif "preprocessed_cache_hit" in counters:
            results[current] = "hit (preprocessed: a source, header or flag changed, the preprocessed code did not)"
        elif "cache_miss" in counters:
            results[current] = "miss"
        else:
            why = sorted(counters & set(_CCACHE_UNCACHEABLE))
            if why:
                results[current] = f"not cacheable: {', '.join(why)}"
    for line in text.splitlines():
        if line.startswith("# "):
            close()
            current, counters = line[2:].strip(), set()
        elif line.strip():
            counters.add(line.strip())
    close()
    return results


def _sccache_totals(data: Mapping) -> tuple[int, int, int]:
    stats = data.get("stats", {})

    def total(key: str) -> int:
        return sum(int(v) for v in (stats.get(key, {}) or {}).get("counts", {}).values())

    uncacheable = int(stats.get("requests_not_cacheable", 0)) + int(stats.get("requests_unsupported_compiler", 0))
    return total("cache_hits"), total("cache_misses"), uncacheable


def _sccache_levels(data: Mapping) -> tuple[int, int, int] | None:
    """(local hits, remote hits, remote write failures) from a multi-level server's stats; None
    when it reports no levels (one level, or a read-only server)."""
    levels = (data.get("stats", {}) or {}).get("multi_level") or []
    if len(levels) < 2:
        return None
    hits = [int(level.get("hits", 0)) for level in levels]
    return hits[0], sum(hits[1:]), sum(int(level.get("write_failures", 0)) for level in levels[1:])


def _sccache_remote_errors(data: Mapping) -> int:
    stats = data.get("stats", {}) or {}
    levels = _sccache_levels(data)
    return int(stats.get("cache_read_errors", 0)) + int(stats.get("cache_timeouts", 0)) + (levels[2] if levels else 0)


def parse_sccache_json(before: Mapping, after: Mapping, remote: str | None = None) -> CacheStats:
    b, a = _sccache_totals(before), _sccache_totals(after)
    restarted = any(x < y for x, y in zip(a, b))
    if restarted:  # the server restarted in between: its counters began at 0
        b = (0, 0, 0)
    local = remote_hits = None
    errors = 0
    if remote is not None:
        la, lb = _sccache_levels(after), (None if restarted else _sccache_levels(before))
        if la is not None:
            lb = lb or (0, 0, 0)
            local, remote_hits = la[0] - lb[0], la[1] - lb[1]
        errors = _sccache_remote_errors(after) - (0 if restarted else _sccache_remote_errors(before))
    return CacheStats("sccache", a[0] - b[0], a[1] - b[1], a[2] - b[2], exact=False,
                      local_hits=local, remote_hits=remote_hits, remote_errors=max(0, errors), remote=remote)


class CacheProbe:
    """Counts one build's cache hits: ``env()`` goes into the build's environment,
    ``begin()`` before it starts, ``end()`` after it finishes (None if unreadable)."""

    def __init__(self, kind: str, program: Path, build_dir: Path, remote: str | None = None) -> None:
        self.kind = kind
        self.program = Path(program)
        self.build_dir = Path(build_dir)
        self.remote = remote  # the shared cache this build uses, if any (for the hit split)
        self._log = self.build_dir / ".kernloop-ccache-stats.log"
        self._before: dict | None = None
        self.server_env: Mapping[str, str] | None = None  # sccache: reach the build's server (its port)

    def env(self) -> dict[str, str]:
        return {"CCACHE_STATSLOG": str(self._log).replace("$", "$$")} if self.kind == "ccache" else {}  # ccache: $$ = $

    def begin(self) -> None:
        if self.kind == "ccache":
            self._log.unlink(missing_ok=True)
        else:
            self._before = self._sccache_stats()

    def end(self) -> CacheStats | None:
        if self.kind == "ccache":
            if not self._log.exists():
                return parse_ccache_counters({}, self.remote)  # nothing was compiled
            res = proc.try_run(
                [self.program, "--print-log-stats", "--format", "json"],
                env={**os.environ, **self.env()},
            )
            if res is None or not res.ok:
                return None
            try:
                return parse_ccache_counters(json.loads(res.stdout), self.remote)
            except (ValueError, TypeError):
                return None
        after = self._sccache_stats()
        if self._before is None or after is None:
            return None
        return parse_sccache_json(self._before, after, self.remote)

    def by_input(self) -> dict[str, str] | None:
        """Each compilation's result by its input file as the compiler was given it (ccache's
        stats log; call after :meth:`end`). None: the tool keeps no per-compilation record."""
        if self.kind != "ccache":
            return None
        try:
            return parse_stats_log(self._log.read_text(errors="replace"))
        except FileNotFoundError:
            return {}
        except OSError:
            return None

    def _sccache_stats(self) -> dict | None:
        res = proc.try_run([self.program, "--show-stats", "--stats-format", "json"], timeout=30,
                           env=dict(self.server_env) if self.server_env is not None else None)
        if res is None or not res.ok:
            return None
        try:
            return json.loads(res.stdout)
        except ValueError:
            return None


def probe_for(launcher: str | None, build_dir: Path) -> CacheProbe | None:
    """A probe for the launcher a build directory uses (from its CMake cache), or None."""
    kind = launcher_kind(launcher)
    if kind is None or launcher is None:
        return None
    program = Path(launcher.split(";")[0])
    if not program.is_absolute():
        import shutil

        found = shutil.which(str(program))
        if not found:
            return None
        program = Path(found)
    return CacheProbe(kind, program, build_dir)
