"""Distributed compilation on sccache-dist: the pure half.

sccache (>= 0.9) splits an nvcc call (``nvcc --dryrun``) into cudafe++, cicc, ptxas and
host-compiler jobs and sends them to build servers through a scheduler; the nvcc driver,
preprocessing and fatbinary stay on the local machine. Asked for with ``--distributed URL``,
its environment variable or ``[tool.buildtools] dist-scheduler`` (``buildtools.settings``).

This module checks the scheduler URL, names the client's files (outside the source tree),
writes the client config *text* (the one place the token appears; the runtime writes it with
mode 0600), reads ``sccache --dist-status`` into :class:`~buildtools.model.ClusterFacts`, and
plans the job counts. Starting the client and reading its stats back is
:mod:`buildtools.cache.dist_runtime`.

What combines: sccache's cache (local disk, and a shared level behind it --
``buildtools.cache.remote``) is asked first; only a miss is compiled, on the cluster. ccache
cannot distribute, so distributed compile makes sccache the launcher (the plan says so when
ccache would have been chosen).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from buildtools.errors import KernloopError
from buildtools.model import ClusterFacts

__all__ = [
    "servers_text",
    "DistPlan",
    "DistJobs",
    "CONF_VAR",
    "PORT_VAR",
    "SCHEDULER_VAR",
    "JOBS_CAP",
    "check_scheduler_url",
    "client_dir",
    "client_port",
    "client_config_text",
    "parse_dist_status",
    "plan_jobs",
    "plan_environment",
    "COMBINES",
    "CLIENT_CONFIG",
    "CLIENT_PORTS",
]

# What the presets' environment gets: the client config (a path; the token stays in that file,
# mode 0600, outside the source tree), the client server's port, and the scheduler for the runner.
CONF_VAR = "SCCACHE_CONF"
PORT_VAR = "SCCACHE_SERVER_PORT"
SCHEDULER_VAR = "KERNLOOP_DIST_CLIENT_SCHEDULER"
CLIENT_CONFIG = "client.toml"  # in the client dir
# A compile job that is distributed still runs its nvcc driver (or g++ -E) locally and holds a
# connection to the client; past this many there is nothing left to gain on a developer box or
# a CI runner, and ninja's bookkeeping grows.
JOBS_CAP = 256
# The client servers' ports: below the ephemeral ranges (Linux 32768-60999, IANA 49152+), so no
# outgoing connection can hold one when a client starts; the loopback cluster keeps below them.
CLIENT_PORTS = range(24300, 24800)
COMBINES = ("with a shared cache: sccache's cache first (local disk, then the shared level), "
            "distributed compile on a miss; ccache's remote storage does not combine (ccache cannot distribute)")


def servers_text(servers: int) -> str:
    """``1 server``, ``4 servers``."""
    return f"{servers} server{'s' if servers != 1 else ''}"


def _bad(source: str, text: object, what: str, fix: str = "") -> KernloopError:
    shown = f"{source} {text}" if source.startswith("-") else f"{source}={text}"
    return KernloopError(f"{shown}: {what}", fix or "give the scheduler as http://HOST:PORT, e.g. http://10.0.0.5:10600")


def check_scheduler_url(text: object, source: str) -> str:
    """``http(s)://HOST[:PORT]`` (no path, no credentials; the token comes from its own
    variable), or ``off``. Raises KernloopError naming ``source``."""
    value = str(text).strip()
    if value.lower() in ("off", "none"):
        return "off"
    parts = urlsplit(value)
    if "://" not in value or parts.scheme.lower() not in ("http", "https"):
        raise _bad(source, text, "not an http(s):// scheduler URL")
    try:
        port = parts.port
    except ValueError:
        raise _bad(source, text, "the port is not a number in 1-65535") from None
    if not parts.hostname:
        raise _bad(source, text, "no host")
    if parts.username or parts.password:
        raise _bad(source, text, "credentials do not go in the URL",
                   "give the token in its own variable or file (docs/distributed.md)")
    if parts.path.strip("/") or parts.query or parts.fragment or any(c.isspace() for c in value):
        raise _bad(source, text, "a scheduler URL has no path or query")
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6
        netloc = f"[{parts.hostname}]" + (f":{port}" if port else "")
    return f"{parts.scheme.lower()}://{netloc}"


def _key(scheduler: str, source_dir: Path) -> str:
    return hashlib.sha256(f"{scheduler}\0{source_dir}".encode()).hexdigest()[:12]


def client_dir(home: Path, scheduler: str, source_dir: Path) -> Path:
    """Where one project's client for one scheduler keeps its config, log and toolchains:
    under ``home`` (the user's cache dir), never in the source tree."""
    return Path(home) / f"client-{_key(scheduler, source_dir)}"


def client_port(scheduler: str, source_dir: Path) -> int:
    """The client server's port: its own per project and scheduler, so a build never talks to
    (or restarts) a client another project or another cluster uses."""
    return CLIENT_PORTS[int(_key(scheduler, source_dir), 16) % len(CLIENT_PORTS)]


def _toml(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def client_config_text(scheduler: str, token: str, toolchain_dir: Path) -> str:
    """The sccache client config (``SCCACHE_CONF``). Holds the token: write it 0600, outside the tree."""
    return (
        "# written by kernloop for distributed compilation; holds a secret (mode 0600)\n"
        "[dist]\n"
        f"scheduler_url = {_toml(scheduler)}\n"
        "toolchains = []\n"
        f"cache_dir = {_toml(str(toolchain_dir))}\n"
        "[dist.auth]\n"
        'type = "token"\n'
        f"token = {_toml(token)}\n"
    )


def parse_dist_status(text: str) -> tuple[int, int] | str:
    """``sccache --dist-status`` -> (servers, CPUs), or why the cluster is not usable."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return f"unreadable sccache --dist-status output: {text.strip()[:120]!r}"
    if isinstance(data, Mapping):
        if "SchedulerStatus" in data:
            status = data["SchedulerStatus"][1] if isinstance(data["SchedulerStatus"], list) else {}
            return int(status.get("num_servers", 0)), int(status.get("num_cpus", 0))
        for key, value in data.items():
            detail = value[-1] if isinstance(value, list) and value else value
            return f"{key}: {detail}" if detail else str(key)
    if isinstance(data, str):  # "Disabled"
        return data
    return f"unexpected sccache --dist-status output: {text.strip()[:120]!r}"


@dataclass(frozen=True)
class DistPlan:
    """What a plan with distributed compile uses. No token: that is in the client config only."""

    scheduler: str  # checked URL
    source: str  # the flag, variable or pyproject key it came from
    client_config: Path  # SCCACHE_CONF, mode 0600, outside the source tree
    port: int  # SCCACHE_SERVER_PORT of the client server
    servers: int
    cpus: int

    def __str__(self) -> str:
        return f"{self.scheduler} ({servers_text(self.servers)}, {self.cpus} CPUs)"


@dataclass(frozen=True)
class DistJobs:
    jobs: int
    reason: str


def plan_jobs(cluster: ClusterFacts, cores: int, ram_bytes: int, ram_label: str, local_part_gib: float) -> DistJobs:
    """Compile jobs with the cluster: min(cluster CPUs, what local RAM allows for the parts of each
    job that stay local -- nvcc driver, preprocessing, fatbinary --, a cap). Pure.

    The local cores are not added: sccache sends every compile to the scheduler and compiles
    locally only when it refuses one ("Insufficient capacity across N available servers"), which
    is a fallback. Measured here (one 2-CPU server, cold csrc/): 2 + 2 jobs -> 6 of 23 compiles fell
    back; 2 jobs -> none, and the build was as fast."""
    by_ram = max(1, int(ram_bytes // round(local_part_gib * 1024**3)))
    jobs = max(1, min(cluster.cpus, by_ram, JOBS_CAP))
    reason = (f"cluster {cluster.cpus} CPUs on {servers_text(cluster.servers)} "
              f"({cores} local cores not added: sccache compiles locally only when the scheduler has no room, "
              f"as a fallback); local {ram_label} {ram_bytes / 1024**3:.1f} GiB allows {by_ram} jobs at "
              f"{local_part_gib:g} GiB each for the parts that stay local (nvcc driver, preprocessing, fatbinary); "
              f"cap {JOBS_CAP}")
    return DistJobs(jobs, reason)


def plan_environment(plan: DistPlan) -> dict[str, str]:
    """The launcher environment for distributed compile (no secret in it)."""
    return {CONF_VAR: str(plan.client_config), PORT_VAR: str(plan.port), SCHEDULER_VAR: plan.scheduler}
