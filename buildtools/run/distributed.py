"""A build's side of distributed compile: whether the presets must be planned again for it, and
the sccache client made ready (started or reused, the scheduler waited for, the token checked)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from buildtools.cache import dist, dist_runtime, remote_runtime
from buildtools.cmake.presets import ResolvedPreset
from buildtools.errors import KernloopError
from buildtools.settings import DIST_TOKEN_VARS, Overrides, dist_request, dist_token, load_config

__all__ = ["replan_reason", "prepare", "without_token"]


def without_token(env: Mapping[str, str]) -> dict[str, str]:
    """What cmake, ninja and the compilers get: not the distributed-compile token (it is in the
    client's config; nothing they run needs it or should be able to log it)."""
    return {k: v for k, v in env.items() if k not in DIST_TOKEN_VARS}


def replan_reason(preset: ResolvedPreset, env: Mapping[str, str], source_dir: Path,
                  prepare: Callable[[str], bool]) -> str | None:
    """Why the presets must be planned again for distributed compile (None: they need not):
    it was turned on or off, or the cluster they were planned for is no longer usable (then
    the new plan is the local one). Otherwise ``prepare`` makes the client ready for the build."""
    asked = dist_request(Overrides.from_sources(env=env), load_config(source_dir))
    have = preset.environment.get(dist.SCHEDULER_VAR)
    if asked is None:
        return "distributed compile turned off" if have else None
    if have != asked[0]:
        return f"distributed compile on {asked[0]} asked for"
    return None if prepare(asked[0]) else f"the cluster behind {asked[0]} is not usable now"


def prepare(sccache: Path | None, source_dir: Path, scheduler: str, env: Mapping[str, str],
            compiler_env: dict[str, str], say: Callable[[str], None]) -> tuple[dist_runtime.DistProbe | None, bool]:
    """Start (or reuse) the sccache client with the build's environment and wait (bounded) for the
    scheduler: (its probe, or None when the cluster cannot be used; whether the shared cache was
    found down and left out). A wrong token raises."""
    from buildtools.session import dist_client

    client = dist_client(sccache, source_dir, scheduler, env)
    if client is None:
        return None, False
    token, token_source = dist_token(env)
    if dist_runtime.reach(scheduler) is not None:
        return None, False
    refused = dist_runtime.check_token(scheduler, token)
    if refused is not None:
        raise KernloopError(f"scheduler {scheduler}: {refused} from {token_source}",
                            f"give that scheduler's client token in {token_source.split('=')[0]}")
    client.write_config(token)
    remote_down = False
    endpoint = remote_runtime.endpoint_from_env("sccache", compiler_env)  # a shared cache that is down
    why = remote_runtime.probe(endpoint) if endpoint is not None else None  # would stall every compile
    if endpoint is not None and why is not None:
        say(f"warning: shared cache {endpoint.description} unreachable ({why}): building with the local cache only")
        compiler_env = {k: v for k, v in compiler_env.items() if k not in endpoint.variables}
        remote_down = True
    client.start(compiler_env)
    status = client.wait(compiler_env)
    if isinstance(status, str):
        return None, remote_down
    return dist_runtime.DistProbe(client, compiler_env, *status), remote_down
