"""The runner behind ``python -m buildtools build``: presets -> configure -> build -> install -> summary.

Each step runs only when needed:

* **presets** are rewritten only when the facts that shape them changed (torch,
  nvcc, Python, the launcher, and the env-var overrides the planner reads); the
  fingerprint of those facts is kept in the build dir (``.kernloop-state.json``).
  A preset the user edited by hand is therefore left alone until the machine changes.
* **configure** runs when the build dir has no CMake cache or ``build.ninja``, the
  facts changed (then ``--fresh``: a new nvcc or Python must not meet a stale
  cache), or the resolved preset differs from the one last configured. Edits to
  CMakeLists.txt/cmake/ need nothing from us: ninja re-runs CMake itself.
* **build** is ``cmake --build`` with ``NINJA_STATUS`` set to a format we parse for
  the progress bar; the full output goes to ``<build dir>/kernloop-build.log``.
* **install** stages ``cmake --install`` into the build dir and moves each changed
  file into place with a rename. ``cmake --install`` overwrites the ``.so`` in place
  (same inode): a Ctrl-C would leave half a library, and a Python process that has
  the old one loaded could crash. A rename does neither.

The whole run holds the build dir's lock (``buildtools.util.lock``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TextIO

from buildtools.cache import launcher as ccache, remote as remote_cache
from buildtools.cmake import ninja
from buildtools.util import proc
from buildtools.errors import KernloopError
from buildtools.model import Facts, to_jsonable
from buildtools.util.lock import LOCK_FILES, BuildLock, Holder

__all__ = [
    "BuildOptions",
    "BuildResult",
    "InstalledFile",
    "ResolvedPreset",
    "STATE_NAME",
    "LOG_NAME",
    "facts_fingerprint",
    "read_cmake_cache",
    "resolve_preset",
    "configure_reason",
    "clean_build_dir",
    "install_atomically",
    "run_build",
    "write_presets",
    "terminate_as_interrupt",
]

STATE_NAME = ".kernloop-state.json"
LOG_NAME = "kernloop-build.log"
PRESET_FILES = ("CMakePresets.json", "CMakeUserPresets.json")
# The planner reads these; a change must regenerate the presets like a new toolchain does.
OVERRIDE_VARS = ("MAX_JOBS", "NVCC_THREADS", "TORCH_CUDA_ARCH_LIST", "CMAKE_BUILD_TYPE", "KERNLOOP_RAM_BUDGET",
                 remote_cache.URL_VAR, remote_cache.MODE_VAR)


# --------------------------------------------------------------------------------------------
# Pure parts: fingerprints, presets, decisions
# --------------------------------------------------------------------------------------------


def facts_fingerprint(facts: Facts, env: Mapping[str, str]) -> dict[str, Any]:
    """The facts that shape the presets. Cores/RAM are left out on purpose: they wobble
    from run to run, and a stale job count is harmless where a stale nvcc path is not."""

    def prog(p: Any) -> list[str] | None:
        return None if p is None else [str(p.path), str(p.version)]

    fingerprint = {
        "python": [str(facts.python.executable), facts.python.version],
        "torch": None if facts.torch is None else [facts.torch.version, str(facts.torch.root), facts.torch.cuda],
        "nvcc": None if facts.nvcc is None else [str(facts.nvcc.path), facts.nvcc.version],
        "cmake": prog(facts.cmake),
        "ccache": prog(facts.ccache),
        "sccache": prog(facts.sccache),
        "overrides": {k: env[k] for k in OVERRIDE_VARS if str(env.get(k, "")).strip()},
    }
    if facts.extra:  # a platform plugin's toolchain (e.g. hipcc) shapes the presets like nvcc does
        fingerprint["platforms"] = to_jsonable(facts.extra)
    # The shared cache lives in the presets' environment: a new [tool.buildtools] remote-cache
    # must rewrite them too (only present when set, so other builds keep their fingerprint).
    configured = remote_cache.configured_url(facts.source_dir)
    if configured:
        fingerprint["remote_cache"] = configured
    return fingerprint


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


@dataclass(frozen=True)
class ResolvedPreset:
    name: str
    binary_dir: Path
    digest: str  # of everything that feeds the configure step (after inheritance)
    has_build_preset: bool
    environment: Mapping[str, str] = field(default_factory=dict)  # the preset's own, macros expanded


def _load_presets(source_dir: Path) -> list[dict[str, Any]]:
    docs = []
    for fname in PRESET_FILES:
        path = source_dir / fname
        if not path.exists():
            continue
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise KernloopError(f"cannot read {path}: {exc}", "fix the file, or regenerate it: python -m buildtools presets --force-overwrite") from None
    return docs


def _expand(value: str, source_dir: Path, preset: str) -> str:
    return (
        value.replace("${sourceDir}", str(source_dir))
        .replace("${sourceParentDir}", str(source_dir.parent))
        .replace("${sourceDirName}", source_dir.name)
        .replace("${presetName}", preset)
        .replace("${dollar}", "$")
    )


def resolve_preset(source_dir: Path, name: str) -> ResolvedPreset | None:
    """The configure preset ``name`` with its ``inherits`` applied; None if no such preset.

    Only what decides where and how to configure is resolved (binaryDir, generator,
    cacheVariables, environment, toolchain); ``include`` files are not followed.
    """
    docs = _load_presets(source_dir)
    configure = {p.get("name"): p for d in docs for p in d.get("configurePresets", []) if isinstance(p, dict)}
    builds = {p.get("name") for d in docs for p in d.get("buildPresets", []) if isinstance(p, dict)}
    if name not in configure:
        return None

    def merged(pname: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if pname in seen or pname not in configure:
            return {}
        preset = configure[pname]
        parents = preset.get("inherits", [])
        parents = [parents] if isinstance(parents, str) else list(parents)
        out: dict[str, Any] = {"cacheVariables": {}, "environment": {}}
        for parent in reversed(parents):  # the first parent wins, as in CMake
            base = merged(parent, (*seen, pname))
            for key, value in base.items():
                if key in ("cacheVariables", "environment"):
                    out[key].update(value)
                else:
                    out[key] = value
        for key, value in preset.items():
            if key in ("cacheVariables", "environment"):
                out[key].update(value or {})
            elif key not in ("name", "inherits", "hidden", "displayName", "description"):
                out[key] = value
        return out

    full = merged(name)
    binary = full.get("binaryDir")
    if not binary:
        raise KernloopError(f"configure preset {name!r} has no binaryDir", "add one, or regenerate: python -m buildtools presets --force-overwrite")
    binary_dir = Path(_expand(str(binary), source_dir, name))
    if not binary_dir.is_absolute():
        binary_dir = source_dir / binary_dir
    digest = hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:16]
    environment = {str(k): _expand(str(v), source_dir, name) for k, v in full["environment"].items() if v is not None}
    return ResolvedPreset(name, binary_dir, digest, name in builds, environment)


def configure_reason(build_dir: Path, state: Mapping[str, Any], preset: ResolvedPreset, fingerprint: Mapping[str, Any]) -> str | None:
    """Why the build dir must be configured again (None: it need not)."""
    if not (build_dir / "CMakeCache.txt").exists():
        return "no CMake cache yet"
    if not (build_dir / "build.ninja").exists():
        return "no build.ninja"
    if state.get("fingerprint") != fingerprint:
        return "the toolchain changed"
    if state.get("preset") != preset.digest:
        return f"preset {preset.name!r} changed"
    return None


def clean_build_dir(build_dir: Path) -> None:
    """Remove everything in ``build_dir`` except its lock files and the facts fingerprint
    (a clean build is not a reason to rewrite the presets)."""
    if not build_dir.is_dir():
        return
    for child in build_dir.iterdir():
        if child.name in LOCK_FILES or child.name == STATE_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def terminate_as_interrupt() -> None:
    """Treat SIGTERM like Ctrl-C in a command's main thread: the children run in their own
    sessions, so without this a ``kill`` would end us but leave ninja building, unlocked."""
    import threading

    if threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------------------------
# Install: stage, then rename into place
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledFile:
    path: Path
    changed: bool  # False: the same bytes were already there


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done (only the main thread can do this)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def _same_file_content(a: Path, b: Path) -> bool:
    import filecmp

    try:
        return b.exists() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def install_atomically(
    cmake: Path | str,
    build_dir: Path,
    prefix: Path,
    *,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] = lambda line: None,
) -> tuple[InstalledFile, ...]:
    """``cmake --install`` into a staging dir, then rename every changed file into ``prefix``."""
    stage = build_dir / ".kernloop-stage"
    if stage.exists():
        shutil.rmtree(stage)
    rc = proc.stream([cmake, "--install", build_dir, "--prefix", stage], on_line, env=env, on_interrupt="forward")
    if rc != 0:
        raise _InstallFailed(rc)
    staged = sorted(p for p in stage.rglob("*") if p.is_file() or p.is_symlink())
    installed: list[InstalledFile] = []
    with _sigint_deferred():
        for src in staged:
            dest = prefix / src.relative_to(stage)
            if not src.is_symlink() and _same_file_content(src, dest):
                installed.append(InstalledFile(dest, False))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.kernloop-{os.getpid()}.tmp")
            try:
                if src.is_symlink():
                    tmp.unlink(missing_ok=True)
                    os.symlink(os.readlink(src), tmp)
                else:
                    shutil.copy2(src, tmp)
                os.replace(tmp, dest)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise KernloopError(f"cannot install {dest}: {exc.strerror or exc}", "check that the directory is writable") from None
            installed.append(InstalledFile(dest, True))
    shutil.rmtree(stage, ignore_errors=True)
    return tuple(installed)


class _InstallFailed(Exception):
    def __init__(self, rc: int) -> None:
        super().__init__(rc)
        self.rc = rc


# --------------------------------------------------------------------------------------------
# Progress display
# --------------------------------------------------------------------------------------------


class Progress:
    """A one-line bar on a terminal; one line per finished step otherwise.

    Through a pipe ninja reports a step when it *finishes*, so during one long
    compile nothing arrives; on a terminal a ticker redraws the bar (elapsed time,
    steps still running) twice a second so it never looks stuck.
    """

    TICK_S = 0.5

    def __init__(self, out: TextIO, tty: bool | None = None) -> None:
        import threading

        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self._drawn = False
        self._last: ninja.Status | None = None
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK_S):
            with self._lock:
                if self._stop.is_set():
                    break
                if self._last is not None:
                    self._draw(self._last)
                else:  # nothing finished yet: say that it runs
                    self.out.write(f"\rbuilding... {time.monotonic() - self._start:4.0f}s")
                    self.out.flush()
                    self._drawn = True

    @staticmethod
    def _what(st: ninja.Status) -> str:
        m = re.search(r"object (\S+)$", st.description)
        return ninja.source_of(m[1]) if m else st.description

    def _draw(self, st: ninja.Status) -> None:
        width = shutil.get_terminal_size((80, 20)).columns
        bar_w = 24
        done = int(bar_w * st.finished / st.total) if st.total else 0
        elapsed = time.monotonic() - self._start
        running = f" ({st.running} running)" if st.running and st.finished < st.total else ""
        line = f"[{'#' * done}{'.' * (bar_w - done)}] {st.finished}/{st.total} {elapsed:4.0f}s{running} done: {self._what(st)}"
        self.out.write("\r" + line[: width - 1].ljust(width - 1))
        self.out.flush()
        self._drawn = True

    def update(self, st: ninja.Status) -> None:
        if not self.tty:
            self.out.write(f"[{st.finished}/{st.total}] {self._what(st)}\n")
            self.out.flush()
            return
        with self._lock:
            self._last = st
            self._draw(st)

    def clear(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            if self._drawn:
                width = shutil.get_terminal_size((80, 20)).columns
                self.out.write("\r" + " " * (width - 1) + "\r")
                self.out.flush()
                self._drawn = False


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOptions:
    source_dir: Path
    preset: str = "release"
    target: str = "install"  # "install": build everything, then install into the source tree
    clean: bool = False
    progress: bool | None = None  # None: a bar on a terminal, lines otherwise
    lock_timeout_s: float | None = None


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
            "failure": self.failure,
            "warnings": self.warnings,
        }


PresetWriter = Callable[[Path, Mapping[str, str], Callable[[str], None]], "tuple[Facts, bool]"]


def write_presets(source_dir: Path, env: Mapping[str, str], say: Callable[[str], None]) -> tuple[Facts, bool]:
    """Detect, plan and merge our presets into CMakeUserPresets.json (the user's own kept,
    the old file backed up, one atomic write): what ``presets --force-overwrite`` does,
    since a build only gets here when the machine changed. Returns the facts it planned
    from and whether the file changed."""
    from buildtools.util import fileio
    from buildtools.cmake import presets  # lazy: the planner is not needed for an up-to-date build
    from buildtools.session import PlanOptions, plan_for

    facts, plan = plan_for(PlanOptions(source_dir=source_dir, env=env))
    path = source_dir / presets.FILE_NAME
    text = fileio.read_text(path)
    existing = None
    if text is not None:
        try:
            existing = presets.parse(text)
        except presets.InvalidPresets as exc:
            where = f"{path}:{exc.line}" if exc.line else str(path)
            raise KernloopError(f"{where}: {exc.message}", "fix it, or replace it: python -m buildtools presets --force-overwrite") from None
    new_text = presets.dumps(presets.merge(existing, presets.render(plan)).document)
    if new_text != text:
        fileio.atomic_write_text(path, new_text, keep_backup=True)
    for warning in plan.warnings:
        say(f"warning: {warning}")
    return facts, new_text != text


def _detect_facts(source_dir: Path, env: Mapping[str, str]) -> Facts:
    from buildtools.session import PlanOptions, detect_facts  # plugins' facts count too

    return detect_facts(PlanOptions(source_dir=source_dir, env=env))


def _read_state(build_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((build_dir / STATE_NAME).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(build_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = build_dir / f"{STATE_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, build_dir / STATE_NAME)


def _default_build_dir(source_dir: Path, preset: str) -> Path:
    return source_dir / f"cmake-build-{preset}"  # the presets writer's naming


_WARNING_RE = re.compile(r"(?:^|\s)warning(?: #\d+-D)?: ", re.IGNORECASE)


def run_build(
    options: BuildOptions,
    *,
    out: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    detect: Callable[[Path, Mapping[str, str]], Facts] = _detect_facts,
    write_presets: PresetWriter = write_presets,
) -> BuildResult:
    """Run one build. Returns its result (``ok`` False on a failed configure/build/install);
    raises KernloopError for a setup problem the user must fix first."""
    out = out or sys.stderr
    env = dict(os.environ if env is None else env)
    source_dir = Path(os.path.abspath(options.source_dir))
    start = time.monotonic()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    preset = resolve_preset(source_dir, options.preset)
    build_dir = preset.binary_dir if preset else _default_build_dir(source_dir, options.preset)

    def waiting(holder: Holder | None) -> None:
        who = holder.describe() if holder else "another process"
        say(f"waiting for {build_dir}: locked by {who}")

    with BuildLock(build_dir, on_wait=waiting, timeout_s=options.lock_timeout_s):
        return _locked_build(options, source_dir, build_dir, preset, env, out, say, start, detect, write_presets)


def _locked_build(
    options: BuildOptions,
    source_dir: Path,
    build_dir: Path,
    preset: ResolvedPreset | None,
    env: dict[str, str],
    out: TextIO,
    say: Callable[[str], None],
    start: float,
    detect: Callable[[Path, Mapping[str, str]], Facts],
    write_presets: PresetWriter,
) -> BuildResult:
    steps: list[str] = []
    log_path = build_dir / LOG_NAME
    if options.clean:
        clean_build_dir(build_dir)
        steps.append("clean: build dir emptied")
    state = _read_state(build_dir)

    # -- presets: only when the facts changed ----------------------------------------------------
    facts = detect(source_dir, env)
    fingerprint = facts_fingerprint(facts, env)
    fresh = False
    if preset is None or state.get("fingerprint") != fingerprint:
        why = f"no preset {options.preset!r} yet" if preset is None else (
            "toolchain changed" if state.get("fingerprint") else "first build in this dir")
        facts, changed = write_presets(source_dir, env, say)
        fingerprint = facts_fingerprint(facts, env)
        preset = resolve_preset(source_dir, options.preset)
        if preset is None:
            raise KernloopError(
                f"no configure preset {options.preset!r} in {source_dir / 'CMakeUserPresets.json'}",
                "use --preset release (or relwithdebinfo, debug)",
            )
        if preset.binary_dir != build_dir:
            raise KernloopError(f"preset {options.preset!r} now builds in {preset.binary_dir}, not {build_dir}", "run the build again")
        steps.append(f"presets: {'rewritten' if changed else 'regenerated, no change'} ({why})")
        fresh = bool(state.get("fingerprint")) and state.get("fingerprint") != fingerprint
    else:
        steps.append("presets: up to date")

    cmake = str(facts.cmake.path) if facts.cmake else "cmake"
    log = open(log_path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
    lines: list[str] = []

    def record(line: str) -> None:
        log.write(line + "\n")
        lines.append(line)

    try:
        # -- configure ---------------------------------------------------------------------------
        reason = configure_reason(build_dir, state, preset, fingerprint)
        if reason:
            argv = [cmake, "--preset", preset.name] + (["--fresh"] if fresh else [])
            say(f"configuring ({reason}): {' '.join(argv[1:])}")
            lines.clear()
            rc = proc.stream(argv, record, cwd=source_dir, env=env)
            if rc != 0:
                diag = ninja.first_error(lines)
                return _failed(options, build_dir, log_path, start, steps, f"configure failed (cmake --preset exited {rc})", diag)
            steps.append(f"configure: ran ({reason})")
            state = {"fingerprint": fingerprint, "preset": preset.digest}
            _write_state(build_dir, state)
        else:
            steps.append("configure: not needed")

        # -- build ----------------------------------------------------------------------------
        cache_vars = read_cmake_cache(build_dir)
        launcher = cache_vars.get("CMAKE_CXX_COMPILER_LAUNCHER") or cache_vars.get("CMAKE_CUDA_COMPILER_LAUNCHER")
        probe = ccache.probe_for(launcher, build_dir)
        if probe is not None:
            _shared_cache(probe, {**env, **preset.environment} if preset.has_build_preset else env, say)
        build_env = {**env, "NINJA_STATUS": ninja.STATUS_FORMAT, **(probe.env() if probe else {})}
        target = "all" if options.target == "install" else options.target
        if preset.has_build_preset:
            argv = [cmake, "--build", "--preset", preset.name, "--target", target]
        else:
            argv = [cmake, "--build", str(build_dir), "--target", target]
        before = ninja.read_log(build_dir / ".ninja_log")
        if probe:
            probe.begin()
        progress = Progress(out, options.progress)
        lines.clear()

        def on_build_line(line: str) -> None:
            record(line)
            st = ninja.parse_status(line)
            if st is not None:
                progress.update(st)

        try:
            rc = proc.stream(argv, on_build_line, cwd=source_dir, env=build_env)
        finally:
            progress.clear()
        ran = tuple(ninja.ran_between(before, ninja.read_log(build_dir / ".ninja_log")))
        stats = probe.end() if probe else None
        warnings = sum(1 for l in lines if _WARNING_RE.search(l) and not l.startswith("@@kl"))
        if rc != 0:
            diag = ninja.first_error(lines)
            return _failed(options, build_dir, log_path, start, steps, f"build failed (cmake --build exited {rc})", diag, ran, stats, warnings)
        steps.append(f"build: {' '.join(argv[1:])}")

        # -- install --------------------------------------------------------------------------
        installed: tuple[InstalledFile, ...] = ()
        if options.target == "install":
            prefix = Path(read_cmake_cache(build_dir).get("CMAKE_INSTALL_PREFIX") or source_dir)
            lines.clear()
            try:
                installed = install_atomically(cmake, build_dir, prefix, env=env, on_line=record)
            except _InstallFailed as exc:
                diag = ninja.first_error(lines)
                return _failed(options, build_dir, log_path, start, steps, f"install failed (cmake --install exited {exc.rc})", diag, ran, stats, warnings)
            steps.append(f"install: into {prefix}")
    finally:
        log.close()

    return BuildResult(True, options.preset, build_dir, log_path, time.monotonic() - start, tuple(steps), ran, stats, installed, None, warnings)


def _shared_cache(probe: ccache.CacheProbe, env: Mapping[str, str], say: Callable[[str], None]) -> None:
    """Tell ``probe`` which shared cache the build uses (``env``: what the compilers will see),
    and for sccache start its server with it -- or without it, and one warning, when it is down."""
    given = env
    env = {k: re.sub(r"\$p?env\{(\w+)\}", lambda m: given.get(m[1], ""), v) for k, v in given.items()}
    endpoint = remote_cache.endpoint_from_env(probe.kind, env)
    if endpoint is None:
        return
    probe.remote = endpoint.description
    if probe.kind == "sccache" and remote_cache.prepare_sccache(probe.program, env, say):
        probe.remote += ", unreachable: not used"


def _failed(
    options: BuildOptions,
    build_dir: Path,
    log_path: Path,
    start: float,
    steps: list[str],
    headline: str,
    diag: ninja.Diagnostic | None,
    ran: tuple[ninja.LogEntry, ...] = (),
    stats: ccache.CacheStats | None = None,
    warnings: int = 0,
) -> BuildResult:
    text = f"error: {headline}" + (f"; first error:\n{diag.render()}" if diag else "")
    return BuildResult(False, options.preset, build_dir, log_path, time.monotonic() - start, tuple(steps), ran, stats, (), text, warnings)
