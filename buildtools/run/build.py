"""The runner behind ``python -m buildtools build``: presets -> configure -> build -> install -> summary.

Each step runs only when needed:

* **presets** are rewritten only when the facts that shape them changed (``buildtools.run.state``
  owns that fingerprint). A preset the user edited by hand is left alone until the machine changes.
* **configure** runs when the build dir has no CMake cache or ``build.ninja``, the facts changed
  (then ``--fresh``: a new nvcc or Python must not meet a stale cache), or the resolved preset
  differs from the one last configured. Edits to CMakeLists.txt/cmake/ need nothing from us:
  ninja re-runs CMake itself.
* **build** is ``cmake --build`` with ``NINJA_STATUS`` set to a format we parse for the progress
  bar; the full output goes to ``<build dir>/kernloop-build.log``.
* **install** is staged, then renamed into place (``buildtools.run.install``).

The whole run holds the build dir's lock (``buildtools.util.lock``).
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from buildtools.cache import dist, dist_runtime, peaks
from buildtools.cache import launcher as ccache
from buildtools.cache import remote_runtime
from buildtools.cache.remote import secret_environment
from buildtools.cmake import explain, ninja
from buildtools.cmake.file_api import read_cmake_cache
from buildtools.cmake.presets import FILE_NAME, ResolvedPreset, expand_env_macros, resolve_preset
from buildtools.errors import KernloopError
from buildtools.model import Facts
from buildtools.run import distributed, lone_tu, noop, noop_record, stamp
from buildtools.run.distributed import without_token as _without_token
from buildtools.run import state as build_state
from buildtools.run.install import InstalledFile, InstallFailed, install_atomically
from buildtools.run.log import BuildLog
from buildtools.run.progress import Progress
from buildtools.run.result import BuildResult, failure_text
from buildtools.run.state import PresetWriter, write_presets
from buildtools.settings import BY_NAME
from buildtools.util import proc
from buildtools.util.lock import BuildLock, waiting_notice

__all__ = ["BuildOptions", "Build", "LOG_NAME", "run_build"]

LOG_NAME = "kernloop-build.log"
_WARNING_RE = re.compile(r"(?:^|\s)warning(?: #\d+-D)?: ", re.IGNORECASE)


@dataclass(frozen=True)
class BuildOptions:
    source_dir: Path
    preset: str = "release"
    target: str = "install"  # "install": build everything, then install into the source tree
    clean: bool = False
    progress: bool | None = None  # None: a bar on a terminal, lines otherwise
    lock_timeout_s: float | None = None
    explain: bool = False  # why each TU was rebuilt (ninja -d explain) and what the cache said


def _detect_facts(source_dir: Path, env: Mapping[str, str]) -> Facts:
    from buildtools.session import PlanOptions, detect_facts  # plugins' facts count too

    return detect_facts(PlanOptions(source_dir=source_dir, env=env))


class Build:
    """One build of one preset: the steps in order, each recording what it did in ``steps``."""

    def __init__(self, options: BuildOptions, *, out: TextIO, env: Mapping[str, str],
                 detect: Callable[[Path, Mapping[str, str]], Facts] | None, write_presets: PresetWriter) -> None:
        self.options = options
        self.out = out
        # The presets name a shared cache's password as $env{NAME}: set it for this build only.
        self.env = {**secret_environment(env.get(BY_NAME["remote_cache"].env)), **env}
        # The real detector's facts are cached in the build dir, keyed on what they were read from;
        # a detector passed in (a front end's, a test's) runs every time.
        self.detect = detect or _detect_facts
        self._cache_facts = detect is None
        self.write_presets = write_presets
        self.source_dir = Path(os.path.abspath(options.source_dir))
        self.start = time.monotonic()
        self.preset: ResolvedPreset | None = resolve_preset(self.source_dir, options.preset)
        self.build_dir = (self.preset.binary_dir if self.preset
                          else build_state.default_build_dir(self.source_dir, options.preset))
        self.log_path = self.build_dir / LOG_NAME
        self.steps: list[str] = []
        self.lines: list[str] = []  # the current step's output, for its first error
        self._log = BuildLog(self.log_path)
        self._lock_fd: int | None = None  # inherited by cmake, ninja and the compilers
        self._dist: dist_runtime.DistProbe | None = None
        self._remote_down = False  # the shared cache was unreachable when the distributed client started
        self._explained: tuple[explain.Explained, ...] | None = None  # with options.explain
        self._sccache: str | None = None  # the toolchain's sccache (distributed compile)
        self._inputs: list[list[Any]] = []
        self._torch: str | None = None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def run(self) -> BuildResult:
        with BuildLock(self.build_dir, on_wait=waiting_notice(self.build_dir, self.say),
                       timeout_s=self.options.lock_timeout_s) as lock:
            self._lock_fd = lock.fd
            return self._with_log_problem(self._locked())

    # -- the steps -----------------------------------------------------------------------------

    def _locked(self) -> BuildResult:
        noop.forget(self.build_dir)  # this build may change anything the fast path would trust
        if self.options.clean:
            build_state.clean_build_dir(self.build_dir)
            self.steps.append("clean: build dir emptied")
        state = build_state.read_state(self.build_dir)
        cmake_path, fingerprint = self._presets(state)
        # What the modules are built from, as the build begins (an edit during it makes them stale).
        self._inputs = stamp.snapshot(self.source_dir)
        self._torch = (fingerprint.get("torch") or [None])[0]
        preset = self.preset
        assert preset is not None  # _presets() made sure
        cmake = cmake_path or "cmake"
        self._log.open()
        try:
            reason = build_state.configure_reason(self.build_dir, state, preset, fingerprint)
            if reason:
                fresh = build_state.needs_fresh(self.build_dir, state, fingerprint)
                failure = self._configure(cmake, preset, reason, fresh)
                if failure is not None:
                    return failure
                state = {**state, "configured": {"fingerprint": fingerprint, "preset": preset.digest}}
                state.pop("installed", None)  # a new configure may install other files
                build_state.write_state(self.build_dir, state)
            else:
                self.steps.append("configure: not needed")
            return self._build_and_install(cmake, preset, state)
        finally:
            self._log.close()

    def _toolchain(self) -> build_state.Toolchain:
        """The toolchain facts: from the build dir's record while nothing they were read from has
        changed (a stat per file, no subprocess), else detected and recorded."""
        why = "a detector was passed in"
        if self._cache_facts:
            cached, why = build_state.cached_toolchain(self.build_dir, self.env)
            if cached is not None:
                return cached
        started = time.time_ns()
        facts = self.detect(self.source_dir, self.env)
        self._remember(facts, started)
        return build_state.toolchain_of(facts, f"ran ({why})")

    def _remember(self, facts: Facts, started_ns: int) -> None:
        if not self._cache_facts:
            return
        from buildtools.plugins.spec import BUILTINS, discover

        if facts.extra or len(discover()) != len(BUILTINS):  # a plugin's facts may come from anywhere
            build_state.forget_toolchain(self.build_dir)
            return
        build_state.remember_toolchain(self.build_dir, facts, self.env, started_ns)

    def _presets(self, state: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """Rewrite the presets only when what shapes them changed; the state records it at once,
        before configure, so an interrupted configure never leaves presets the state does not
        describe. Returns (the cmake to run, fingerprint)."""
        toolchain = self._toolchain()
        self.steps.append(f"detect: {toolchain.detected}")
        fingerprint = build_state.fingerprint_of(toolchain, self.env, self.source_dir)
        why = build_state.presets_reason(state, fingerprint)
        self._sccache = (toolchain.fingerprint.get("sccache") or [None])[0]
        replan = self._dist_replan() if self.preset is not None else None
        planned_ram = (state.get("presets") or {}).get("ram")  # what the presets were planned with
        if replan is None and planned_ram:
            replan = peaks.rise_reason(planned_ram, peaks.learned(self.source_dir))
        if self.preset is not None and why is None and replan is None:
            self.steps.append("presets: up to date")
            return toolchain.cmake, fingerprint
        name = self.options.preset
        if self.preset is None:
            why = f"no preset {name!r} yet"
        why = why or replan
        previous = dict(state.get("presets") or {})
        state_before, fingerprint_before = dict(state), fingerprint
        if "platform" not in previous and read_cmake_cache(self.build_dir).get("KERNLOOP_ENABLE_CUDA") == "ON":
            previous["platform"] = "cuda"  # configured by hand, or by a release that did not record it
        started = time.time_ns()
        written = self.write_presets(self.source_dir, self.env, self.say, previous)
        self._remember(written.facts, started)
        fingerprint = build_state.facts_fingerprint(written.facts, self.env)
        state["presets"] = {"fingerprint": fingerprint, "platform": written.platform, "sha": written.sha,
                            "ram": dict(written.learnable_ram)}
        build_state.write_state(self.build_dir, state)
        self.preset = resolve_preset(self.source_dir, name)
        if self.preset is None:
            raise KernloopError(f"no configure preset {name!r} in {self.source_dir / FILE_NAME}",
                                "use --preset release (or relwithdebinfo, debug)")
        if self.preset.binary_dir != self.build_dir:
            raise KernloopError(f"preset {name!r} now builds in {self.preset.binary_dir}, not {self.build_dir}",
                                "run the build again")
        changed = build_state.what_changed(state_before, fingerprint_before)
        self.steps.append(f"presets: {'rewritten' if written.changed else 'regenerated, no change'} ({why})"
                          + (f"; what changed: {changed}" if changed else ""))
        return str(written.facts.cmake.path) if written.facts.cmake else None, fingerprint

    def _configure(self, cmake: str, preset: ResolvedPreset, reason: str, fresh: bool) -> BuildResult | None:
        argv = [cmake, "--preset", preset.name] + (["--fresh"] if fresh else [])
        self.say(f"configuring ({reason}): {' '.join(argv[1:])}")
        rc = self._stream(argv, self.env)
        if rc != 0:
            return self._failed(f"configure failed (cmake --preset exited {rc})")
        self.steps.append(f"configure: ran ({reason})")
        return None

    # -- distributed compile ---------------------------------------------------------------------

    def _compiler_env(self) -> dict[str, str]:
        """What the compilers see: ours, and the preset's environment with its $env{} expanded."""
        preset = self.preset
        given = {**self.env, **preset.environment} if preset is not None and preset.has_build_preset else self.env
        return _without_token(expand_env_macros(given, given))

    def _dist_replan(self, facts: Facts | None = None) -> str | None:
        assert self.preset is not None
        if facts is not None:  # the caller's facts name the sccache (else the toolchain's, recorded)
            self._sccache = str(facts.sccache.path) if facts.sccache else None
        return distributed.replan_reason(self.preset, self.env, self.source_dir, self._dist_prepare)

    def _dist_prepare(self, scheduler: str) -> bool:
        probe, remote_down = distributed.prepare(Path(self._sccache) if self._sccache else None, self.source_dir,
                                                 scheduler, self.env, self._compiler_env(), self.say)
        self._dist = probe
        self._remote_down = self._remote_down or remote_down
        return probe is not None

    def _build_and_install(self, cmake: str, preset: ResolvedPreset, state: dict[str, Any]) -> BuildResult:
        cache_vars = read_cmake_cache(self.build_dir)
        launcher = cache_vars.get("CMAKE_CXX_COMPILER_LAUNCHER") or cache_vars.get("CMAKE_CUDA_COMPILER_LAUNCHER")
        probe = ccache.probe_for(launcher, self.build_dir)
        scheduler = preset.environment.get(dist.SCHEDULER_VAR) if preset.has_build_preset else None
        if scheduler and self._dist is None and not self._dist_prepare(scheduler):
            self.say(f"warning: distributed compile on {scheduler}: the cluster is not usable now; "
                     "sccache compiles locally")
        if probe is not None:
            if self._dist is not None:
                probe.server_env = self._dist.env
            self._shared_cache(probe, self._compiler_env(), restart=self._dist is None)
        target = "all" if self.options.target == "install" else self.options.target
        build_env = {**self.env, "NINJA_STATUS": ninja.STATUS_FORMAT, **(probe.env() if probe else {}),
                     **self._edit_env(cache_vars, target, state)}
        where = ["--preset", preset.name] if preset.has_build_preset else [str(self.build_dir)]
        argv = [cmake, "--build", *where, "--target", target]
        if self.options.explain:
            argv += ["--", *explain.EXPLAIN_ARGS]
        before = ninja.read_log(self.build_dir / ".ninja_log")
        if probe:
            probe.begin()
        if self._dist is not None:
            self._dist.begin()
        progress = Progress(self.out, self.options.progress)

        def on_status(line: str) -> None:
            st = ninja.parse_status(line)
            if st is not None:
                progress.update(st)

        try:
            rc = self._stream(argv, build_env, also=on_status)
        finally:
            progress.clear()
        after = ninja.read_log(self.build_dir / ".ninja_log")
        ran = tuple(ninja.ran_between(before, after))
        self.steps += [step for step in (peaks.after_build(self.build_dir),) if step]
        stats = probe.end() if probe else None
        distributed = self._dist.end() if self._dist is not None else None
        if self.options.explain:
            self._explained = self._explain(ran, probe)
        warnings = sum(1 for line in self.lines if _WARNING_RE.search(line) and not line.startswith(("@@kl", "ninja explain")))
        if rc != 0:
            return self._failed(f"build failed (cmake --build exited {rc})", ran, stats, warnings, distributed)
        self.steps.append(f"build: {' '.join(argv[1:])}")

        installed: tuple[InstalledFile, ...] = ()
        if self.options.target == "install":
            prefix = Path(read_cmake_cache(self.build_dir).get("CMAKE_INSTALL_PREFIX") or self.source_dir)
            current = None if ran else build_state.install_current(state, prefix, after)
            if current is not None:  # nothing built, the installed files are the ones last installed
                installed = tuple(InstalledFile(p, False) for p in current)
                self.steps.append(f"install: up to date ({prefix})")
                return self._done(ran, stats, installed, warnings, distributed)
            self.lines.clear()
            try:
                installed = install_atomically(cmake, self.build_dir, prefix, env=_without_token(self.env),
                                               on_line=self._record,
                                               keep_fds=(self._lock_fd,) if self._lock_fd is not None else ())
            except InstallFailed as exc:
                return self._failed(f"install failed (cmake --install exited {exc.rc})", ran, stats, warnings,
                                    distributed)
            except KernloopError as exc:  # the package dir would not take the files
                return self._failed(f"install failed: {exc.one_line().removeprefix('error: ')}", ran, stats, warnings,
                                    distributed, diagnose=False)
            build_state.record_install(state, prefix, tuple(f.path for f in installed), after)
            build_state.write_state(self.build_dir, state)
            self.steps.append(f"install: into {prefix}")
        return self._done(ran, stats, installed, warnings, distributed)

    def _edit_env(self, cache_vars: Mapping[str, str], target: str, state: dict[str, Any]) -> dict[str, str]:
        """What this run changes when only a few TUs are dirty (a no-op stays one ninja call)."""
        digest = build_state.inputs_digest(self._inputs)
        unchanged, state["inputs"] = state.get("inputs") == digest, digest
        env, steps = lone_tu.run_env(cache_vars, target, self.build_dir, self.env, unchanged)
        self.steps.extend(steps)
        return env

    def _done(self, ran: tuple[ninja.LogEntry, ...], stats: ccache.CacheStats | None,
              installed: tuple[InstalledFile, ...], warnings: int,
              distributed: dist_runtime.DistCounts | None) -> BuildResult:
        stamp.write_stamps(self.source_dir, (f.path for f in installed), self._inputs, self._torch)
        result = BuildResult(True, self.options.preset, self.build_dir, self.log_path, time.monotonic() - self.start,
                             tuple(self.steps), ran, stats, installed, None, warnings, distributed, self._explained)
        scheduler = self.preset.environment.get(dist.SCHEDULER_VAR) if self.preset is not None else None
        noop_record.write(result, self.source_dir, self.env, target=self.options.target, distributed=bool(scheduler))
        return result

    def _explain(self, ran: tuple[ninja.LogEntry, ...], probe: ccache.CacheProbe | None) -> tuple[explain.Explained, ...]:
        """Why each TU that ran was rebuilt, and the compiler cache's result for it."""
        by_input = probe.by_input() if probe is not None else None
        return explain.explain_run(ran, self.lines, self.source_dir, self.build_dir, by_input)

    def _record(self, line: str) -> None:
        self._log.write(line)
        self.lines.append(line)

    def _stream(self, argv: list[str], env: Mapping[str, str], also: Callable[[str], None] | None = None) -> int:
        """Run one step's command, its output into the log and ``lines``; its exit code."""
        self.lines.clear()

        def on_line(line: str) -> None:
            self._record(line)
            if also is not None:
                also(line)

        keep = (self._lock_fd,) if self._lock_fd is not None else ()
        return proc.stream(argv, on_line, cwd=self.source_dir, env=_without_token(env), keep_fds=keep)

    def _failed(self, headline: str, ran: tuple[ninja.LogEntry, ...] = (), stats: ccache.CacheStats | None = None,
                warnings: int = 0, distributed: dist_runtime.DistCounts | None = None, *,
                diagnose: bool = True) -> BuildResult:
        """A failed step: its headline with the first real error of its output on the same line."""
        diag = ninja.first_error(self.lines) if diagnose else None
        return BuildResult(False, self.options.preset, self.build_dir, self.log_path, time.monotonic() - self.start,
                           tuple(self.steps), ran, stats, (), failure_text(headline, diag), warnings, distributed,
                           self._explained)

    def _with_log_problem(self, result: BuildResult) -> BuildResult:
        """A build whose log could not be written fails, and says why (the disk, mostly)."""
        problem = self._log.problem()
        if problem is None:
            return result
        line = problem.one_line()
        failure = f"{result.failure}\n{line}" if result.failure else line
        return dataclasses.replace(result, ok=False, failure=failure)

    def _shared_cache(self, probe: ccache.CacheProbe, env: Mapping[str, str], restart: bool = True) -> None:
        """Tell ``probe`` which shared cache the build uses (``env``: what the compilers will see),
        and for sccache start its server with it -- or without it, and one warning, when it is down
        (not with distributed compile: its client was started with the same environment)."""
        env = expand_env_macros(env, env)
        endpoint = remote_runtime.endpoint_from_env(probe.kind, env)
        if endpoint is None:
            return
        probe.remote = endpoint.description
        if probe.kind == "sccache" and not restart and self._remote_down:
            probe.remote += ", unreachable: not used"
        elif probe.kind == "sccache" and restart and remote_runtime.prepare_sccache(probe.program, env, self.say):
            probe.remote += ", unreachable: not used"


def run_build(
    options: BuildOptions,
    *,
    out: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    detect: Callable[[Path, Mapping[str, str]], Facts] | None = None,
    write_presets: PresetWriter = write_presets,
) -> BuildResult:
    """Run one build (``detect`` None: the real detector, its facts cached in the build dir).
    Returns its result (``ok`` False on a failed configure/build/install);
    raises KernloopError for a setup problem the user must fix first."""
    return Build(options, out=out or sys.stderr, env=os.environ if env is None else env, detect=detect,
                 write_presets=write_presets).run()
