"""The runner's side of the shared compiler cache: what a build environment points at, whether it
is reachable, sccache's server, and the warning when remote storage failed during a build.

The planning half (URL checks, the launcher variables) is :mod:`buildtools.cache.remote`.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from buildtools.cache.remote import mask_url
from buildtools.util import proc

__all__ = ["Endpoint", "endpoint_from_env", "probe", "prepare_sccache", "errors_warning"]


@dataclass(frozen=True)
class Endpoint:
    """The shared cache a build environment configures (read back from the launcher's variables)."""

    tool: str  # "ccache" | "sccache"
    description: str  # "redis://127.0.0.1:6379 (read-only)", password masked
    host: str | None = None  # TCP endpoint to probe; None: nothing to probe (a path, or AWS)
    port: int | None = None
    path: str | None = None  # a unix socket or shared directory
    variables: tuple[str, ...] = ()  # what to drop to build without it


def endpoint_from_env(tool: str | None, env: Mapping[str, str]) -> Endpoint | None:
    """The shared cache ``env`` configures for ``tool``, or None."""
    if tool == "ccache":
        storage = str(env.get("CCACHE_REMOTE_STORAGE", "")).strip()
        if not storage:
            return None
        first = storage.split()[0]
        url, *attrs = first.split("|")
        read_only = any(a.strip() in ("read-only", "read-only=true") for a in attrs)
        desc = f"{mask_url(url)} ({'read-only' if read_only else 'read-write'})"
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        if scheme in ("redis", "http"):
            return Endpoint("ccache", desc, parts.hostname, port or (6379 if scheme == "redis" else 80),
                            variables=("CCACHE_REMOTE_STORAGE",))
        return Endpoint("ccache", desc, path=parts.path or None, variables=("CCACHE_REMOTE_STORAGE",))
    if tool == "sccache":
        chain = str(env.get("SCCACHE_MULTILEVEL_CHAIN", "")).replace(" ", "").split(",")
        level = chain[1] if len(chain) > 1 else None
        if level == "redis" and env.get("SCCACHE_REDIS_ENDPOINT"):
            url = env["SCCACHE_REDIS_ENDPOINT"]
            parts = urlsplit(url if "://" in url else f"redis://{url}")
            ro = env.get("SCCACHE_REDIS_RW_MODE", "").upper() == "READ_ONLY"
            return Endpoint("sccache", f"{mask_url(url)} ({'read-only' if ro else 'read-write'})", parts.hostname,
                            parts.port or 6379, variables=("SCCACHE_MULTILEVEL_CHAIN", "SCCACHE_REDIS_ENDPOINT"))
        if level == "webdav" and env.get("SCCACHE_WEBDAV_ENDPOINT"):
            url = env["SCCACHE_WEBDAV_ENDPOINT"]
            parts = urlsplit(url)
            ro = env.get("SCCACHE_WEBDAV_RW_MODE", "").upper() == "READ_ONLY"
            return Endpoint("sccache", f"{url} ({'read-only' if ro else 'read-write'})", parts.hostname,
                            parts.port or (443 if parts.scheme == "https" else 80),
                            variables=("SCCACHE_MULTILEVEL_CHAIN", "SCCACHE_WEBDAV_ENDPOINT"))
        if level == "s3" and env.get("SCCACHE_BUCKET"):
            ro = env.get("SCCACHE_S3_RW_MODE", "").upper() == "READ_ONLY"
            prefix = env.get("SCCACHE_S3_KEY_PREFIX", "")
            desc = f"s3://{env['SCCACHE_BUCKET']}/{prefix} ({'read-only' if ro else 'read-write'})"
            ep = env.get("SCCACHE_ENDPOINT")
            host = port = None
            if ep:
                parts = urlsplit(ep if "://" in ep else f"http://{ep}")
                host = parts.hostname
                port = parts.port or (443 if parts.scheme == "https" else 80)
            return Endpoint("sccache", desc, host, port, variables=("SCCACHE_MULTILEVEL_CHAIN", "SCCACHE_BUCKET"))
    return None


def probe(endpoint: Endpoint, timeout: float = 2.0) -> str | None:
    """None when ``endpoint`` answers (a TCP connect, or the path exists), else why not."""
    if endpoint.host:
        try:
            with socket.create_connection((endpoint.host, endpoint.port or 0), timeout=timeout):
                return None
        except OSError as exc:
            return exc.strerror or str(exc) or type(exc).__name__
    if endpoint.path and not os.path.exists(endpoint.path):
        return f"{endpoint.path} does not exist"
    return None


def prepare_sccache(program: Path, env: Mapping[str, str], say: Callable[[str], None]) -> str | None:
    """(Re)start the sccache server with ``env``'s cache settings before a build.

    sccache reads its cache settings when its server starts, so a server left running by an
    earlier build would ignore the mode and backend of this one; and a remote that is down
    when the server starts fails every compile. So: probe the remote, restart the server
    with it (or, unreachable, without it -- one warning line). Returns that warning or None.
    """
    endpoint = endpoint_from_env("sccache", env)
    if endpoint is None:
        return None
    server_env = dict(env)
    warning = None
    why = probe(endpoint)
    if why is not None:
        warning = f"shared cache {endpoint.description} unreachable ({why}): building with the local cache only"
        say(f"warning: {warning}")
        for var in endpoint.variables:
            server_env.pop(var, None)
    proc.try_run([program, "--stop-server"], env=server_env, timeout=30)
    started = proc.try_run([program, "--start-server"], env=server_env, timeout=60)
    if started is None or not started.ok:
        detail = (started.stderr or started.stdout).strip().splitlines()[-1:] if started else []
        say(f"warning: sccache server did not start{': ' + detail[0] if detail else ''}")
    return warning


def errors_warning(description: str | None, errors: int, tool: str) -> str | None:
    """The one warning line for a build whose shared cache failed (``errors`` > 0)."""
    if not errors:
        return None
    what = description or "the shared cache"
    return (f"shared cache {what}: {errors} {tool} error{'s' if errors != 1 else ''} during this build "
            "(down or unreachable?); built with the local cache only")
