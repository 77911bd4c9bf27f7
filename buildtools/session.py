"""One plan for every entry point: detect the facts, ask for what is missing (on a terminal), plan.

``plan_for`` is what ``python -m buildtools presets``, ``buildtools build`` and the
pip backend call, so they all get the same numbers::

    from buildtools.session import PlanOptions, plan_for
    facts, plan = plan_for(PlanOptions(source_dir=root, interactive=False))
    defines = plan.cmake_defines()          # -D values for CMake (pip backend)
    env = plan.environment                  # launcher settings for the build

Overrides come from ``PlanOptions.overrides``; by default they are read from the
environment (the variables of ``buildtools.settings.OVERRIDES``).

Platforms come through ``buildtools.plugins.loader``: the built-in CUDA and CPU and any installed
plugin. Plugin patches are in force only inside ``plan_for`` (from their point to the plan) and
are undone before it returns; ``plan_with_report`` also says what each plugin and patch did.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from buildtools.cache import peaks
from buildtools.util import proc
from buildtools.settings import DIST_TOKEN_VARS, dist_request, dist_token, load_config
from buildtools.errors import KernloopError
from buildtools.model import Facts
from buildtools.settings import Overrides
from buildtools.model import Plan
from buildtools.plugins.loader import PluginReport, PluginSession

if TYPE_CHECKING:
    from buildtools.detect import DetectOptions

__all__ = ["PlanOptions", "detect_facts", "plan_for", "plan_with_report", "validate_nvcc", "with_cluster",
           "dist_client"]


@dataclass(frozen=True)
class PlanOptions:
    source_dir: Path
    nvcc: Path | None = None  # --nvcc
    python: Path | None = None  # --python
    overrides: Overrides | None = None  # None: from env only
    env: Mapping[str, str] | None = None  # None: os.environ
    # None: prompt for a missing nvcc only on a terminal; False: never prompt (backends, CI).
    interactive: bool | None = None
    require_torch: bool = True  # the kernels cannot be built without it
    # Full control of detection (tests, other front ends); its nvcc is replaced by a prompt's answer.
    # When given, source_dir/nvcc/python/env above are not used for detection.
    detect: DetectOptions | None = None
    # prompt_toolkit ``input``/``output`` for the nvcc question (tests, embedding front ends).
    prompt_io: Mapping[str, Any] | None = None


def validate_nvcc(path: Path) -> str | None:
    """None when ``path`` is an nvcc that runs, else what is wrong (for the prompt to show)."""
    if not path.exists():
        return f"{path}: no such file"
    if path.is_dir():
        return f"{path} is a directory; give the nvcc program (e.g. {path / 'bin' / 'nvcc'})"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    result = proc.try_run([path, "--version"], timeout=30)
    if result is None or not result.ok or not re.search(r"release \d+\.\d+", result.stdout + result.stderr):
        return f"{path} does not run as nvcc (no CUDA release in its --version)"
    return None


def _detect(options: PlanOptions, nvcc: Path | None) -> Facts:
    from buildtools.detect import DetectOptions, detect_all  # lazy: keeps `import buildtools.session` cheap

    if options.detect is not None:
        return detect_all(replace(options.detect, nvcc=nvcc))
    return detect_all(DetectOptions(source_dir=options.source_dir, nvcc=nvcc, python=options.python,
                                    env=options.env))


def plan_for(options: PlanOptions) -> tuple[Facts, Plan]:
    """Detect, fill in what is missing, plan. Raises KernloopError for anything the user must fix."""
    facts, plan, _ = plan_with_report(options)
    return facts, plan


def detect_facts(options: PlanOptions) -> Facts:
    """The facts a plan would see -- platform plugins' facts included -- without planning or
    prompting (for ``build``'s fingerprint and ``doctor``)."""
    env = os.environ if options.env is None else options.env
    nvcc = options.detect.nvcc if options.detect is not None else options.nvcc
    plugin_env = options.detect.env if options.detect is not None and options.detect.env is not None else env
    with PluginSession(plugin_env) as plugins:
        plugins.apply("before-detection")
        return plugins.contribute(plugins.run(_detect, options, nvcc))


def plan_with_report(options: PlanOptions) -> tuple[Facts, Plan, PluginReport]:
    """:func:`plan_for`, plus what the platform plugins and their patches did."""
    env = os.environ if options.env is None else options.env
    overrides = options.overrides if options.overrides is not None else Overrides.from_sources(env=env)
    config = load_config(options.source_dir)
    nvcc = options.detect.nvcc if options.detect is not None else options.nvcc
    # Plugins probe the same environment detection does.
    plugin_env = options.detect.env if options.detect is not None and options.detect.env is not None else env
    with PluginSession(plugin_env) as plugins:
        plugins.apply("before-detection")
        facts = plugins.run(_detect, options, nvcc)
        facts = _complete(options, facts, nvcc, plugins)
        facts = plugins.contribute(facts)
        facts = with_cluster(facts, overrides, config, env)
        facts = replace(facts, learned_ram=peaks.learned(facts.source_dir))  # what earlier builds measured
        plan = plugins.plan(facts, overrides, config)
        facts, plan = plugins.finish(facts, plan)
        return facts, plan, plugins.report()


def dist_client(sccache: Path | None, source_dir: Path, scheduler: str, env: Mapping[str, str]) -> Any:
    """The sccache client a build of ``source_dir`` uses for ``scheduler`` (None without sccache)."""
    from buildtools.cache import dist, dist_runtime

    if sccache is None:
        return None
    home = dist_runtime.default_home(env)
    return dist_runtime.Client(sccache, scheduler, dist.client_dir(home, scheduler, source_dir),
                               dist.client_port(scheduler, source_dir))


def with_cluster(facts: Facts, overrides: Overrides, config: Any, env: Mapping[str, str]) -> Facts:
    """The cluster's size as a fact, probed only when distributed compile is asked for (this
    starts the sccache client; a wrong token or a missing one is an error here, before anything
    compiles)."""
    asked = dist_request(overrides, config)
    if asked is None:
        return facts
    client = dist_client(facts.sccache.path if facts.sccache else None, facts.source_dir, asked[0], env)
    if client is None:
        return facts  # the planner says sccache is missing
    from buildtools.cache import dist_runtime

    if Path(os.path.abspath(client.home)).is_relative_to(Path(os.path.abspath(facts.source_dir))):
        raise KernloopError(f"the distributed-compile client's files would go to {client.home}, inside the "
                            "source tree (its config holds the token)", "set XDG_CACHE_HOME (or HOME) outside it")
    token, token_source = dist_token(env)
    client_env = {k: v for k, v in env.items() if k not in DIST_TOKEN_VARS}  # the token is in its config
    return replace(facts, cluster=dist_runtime.probe_cluster(client, token, token_source, client_env))


def _complete(options: PlanOptions, facts: Facts, nvcc: Path | None, plugins: PluginSession) -> Facts:
    """Refuse a Python without torch; on a terminal, ask for a missing nvcc when torch wants CUDA."""
    if facts.torch is None and options.require_torch:
        raise KernloopError(
            f"torch is not installed for {facts.python.executable}; the kernels are built against it",
            f"{facts.python.executable} -m pip install -r requirements/torch-cuda.txt "
            "(or torch-cpu.txt), or pass --python PATH to a Python that has torch",
        )

    wants_cuda = facts.torch is not None and facts.torch.cuda is not None
    if facts.nvcc is None and wants_cuda and nvcc is None and options.interactive is not False:
        from buildtools.util.prompt import ask_path, is_interactive

        if options.interactive or is_interactive():
            answer = ask_path(
                f"nvcc not found; torch {facts.torch.version} uses CUDA {facts.torch.cuda}. "
                "Path to nvcc (empty: CPU-only build):",
                problem="nvcc not found", hint="pass --nvcc PATH",
                validate=validate_nvcc, allow_empty=True, interactive=True, **dict(options.prompt_io or {}),
            )
            if answer is not None:
                facts = plugins.run(_detect, replace(options, nvcc=answer), answer)
    return facts
