"""Distributed compilation at run time: reach the scheduler, start (or reuse) the sccache client,
size the cluster, and read back what a build distributed.

Order matters (measured here, see docs/distributed.md): a client started while its scheduler is
down backs off for ~9-30 s and then compiles everything locally, silently; a wrong token makes
every compile *fail* rather than fall back. So, before anything compiles: a TCP connect to the
scheduler (bounded), the token checked against it (an empty ``alloc_job`` request: 401 means
wrong token, 400 means accepted and nothing allocated), then the client server started with
the config, then ``sccache --dist-status`` polled until a build server is registered.

The client config holds the token; it is written mode 0600 under the user's cache directory,
never in the source tree, and nothing else (presets, state, logs, --json) gets the token.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from buildtools.cache import dist
from buildtools.errors import KernloopError
from buildtools.model import ClusterFacts
from buildtools.util import proc

__all__ = [
    "WAIT_S",
    "default_home",
    "read_token",
    "write_private",
    "reach",
    "check_token",
    "Client",
    "probe_cluster",
    "DistCounts",
    "DistProbe",
    "fallback_lines",
]

WAIT_S = 10.0  # longest wait for the scheduler to answer and a build server to be registered
_CONNECT_S = 3.0
_FALLBACK_RE = re.compile(r"Could not perform distributed compile, falling back to local: (.*)")
_STAMP = "client.started"


def default_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/kernloop/dist`` (else ``~/.cache/kernloop/dist``): the client's files."""
    base = str(env.get("XDG_CACHE_HOME", "")).strip() or os.path.join(
        str(env.get("HOME", "")).strip() or os.path.expanduser("~"), ".cache")
    return Path(base) / "kernloop" / "dist"


def read_token(env: Mapping[str, str], value_var: str, file_var: str) -> tuple[str, str]:
    """(token, where from): ``value_var``'s value, else the contents of the file ``file_var`` names."""
    if str(env.get(value_var, "")).strip():
        return str(env[value_var]).strip(), value_var
    path = str(env.get(file_var, "")).strip()
    if not path:
        raise KernloopError("distributed compile needs the scheduler's client token",
                            f"set {value_var}, or {file_var} to a file holding it (python -m buildtools dist up writes one)")
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise KernloopError(f"{file_var}={path}: cannot read it ({exc.strerror or exc})",
                            f"point {file_var} at the token file") from None
    if not token:
        raise KernloopError(f"{file_var}={path}: the file is empty", "put the client token in it")
    return token, f"{file_var}={path}"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _host_port(scheduler: str) -> tuple[str, int]:
    parts = urlsplit(scheduler)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def reach(scheduler: str, timeout: float = _CONNECT_S) -> str | None:
    """None when the scheduler accepts a TCP connection, else why not."""
    try:
        with socket.create_connection(_host_port(scheduler), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def check_token(scheduler: str, token: str, timeout: float = _CONNECT_S) -> str | None:
    """None when the scheduler accepts ``token`` (or cannot say), ``"wrong token"`` when it refuses it.

    An ``alloc_job`` request with no body: the scheduler checks the token first (401 on a
    mismatch) and then refuses the empty body (400) -- nothing is allocated."""
    import urllib.error  # lazy for start-up: urllib.request pulls in http.client and email (~18 ms)
    import urllib.request

    request = urllib.request.Request(f"{scheduler}/api/v1/scheduler/alloc_job", data=b"", method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - the user's scheduler URL
            return None
    except urllib.error.HTTPError as exc:
        return "wrong token (the scheduler answered 401)" if exc.code in (401, 403) else None
    except (urllib.error.URLError, OSError):
        return None  # reachability is reach()'s question


@dataclass(frozen=True)
class Client:
    """One project's sccache client for one scheduler: its files and its server's port."""

    program: Path  # sccache
    scheduler: str
    home: Path  # the client dir (dist.client_dir)
    port: int

    @property
    def config(self) -> Path:
        return self.home / dist.CLIENT_CONFIG

    @property
    def log(self) -> Path:
        return self.home / "client.log"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k != dist.SCHEDULER_VAR}
        env.update({dist.CONF_VAR: str(self.config), dist.PORT_VAR: str(self.port),
                    "SCCACHE_ERROR_LOG": str(self.log), "SCCACHE_LOG": "info"})
        return env

    def write_config(self, token: str) -> None:
        write_private(self.config, dist.client_config_text(self.scheduler, token, self.home / "toolchains"))

    def _stamp(self, env: Mapping[str, str]) -> str:
        keys = sorted(k for k in env if k.startswith("SCCACHE_") or k.startswith("AWS_"))
        text = self.config.read_text() + "\0" + "\0".join(f"{k}={env[k]}" for k in keys)
        return hashlib.sha256(text.encode()).hexdigest()

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def status(self, env: Mapping[str, str]) -> tuple[int, int] | str:
        res = proc.try_run([self.program, "--dist-status"], env=self.env(env), timeout=30)
        if res is None or not res.ok:
            return f"sccache --dist-status failed: {(res.stderr or res.stdout).strip()[:200] if res else 'not run'}"
        return dist.parse_dist_status(res.stdout)

    def start(self, env: Mapping[str, str], say: Callable[[str], None] | None = None) -> str:
        """Reuse the client server when it runs with this config and environment, else (re)start
        it. Returns "reused" or "started"; raises KernloopError when it does not start."""
        run_env = self.env(env)
        stamp = self._stamp(run_env)
        stamp_file = self.home / _STAMP
        if self._listening() and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
            return "reused"
        if self._listening():
            proc.try_run([self.program, "--stop-server"], env=run_env, timeout=30)
        started = proc.try_run([self.program, "--start-server"], env=run_env, timeout=60)
        if started is None or not started.ok:
            detail = (started.stderr or started.stdout).strip().splitlines()[-1:] if started else []
            if detail and "address in use" in detail[0].lower():
                raise KernloopError(f"the sccache client for {self.scheduler} did not start: port {self.port} "
                                    f"(its {dist.PORT_VAR}) is taken by another program",
                                    f"free it (ss -ltnp 'sport = :{self.port}' names the holder); see {self.log}")
            raise KernloopError(f"the sccache client for {self.scheduler} did not start"
                                + (f": {detail[0]}" if detail else ""), f"see {self.log}")
        stamp_file.write_text(stamp + "\n")
        return "started"

    def wait(self, env: Mapping[str, str], timeout: float = WAIT_S) -> tuple[int, int] | str:
        """Poll ``--dist-status`` until a build server is registered: (servers, CPUs), or why not."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(env)
            if isinstance(status, tuple) and status[0] >= 1:
                return status
            if time.monotonic() >= deadline:
                if isinstance(status, tuple):
                    return f"no build server registered with the scheduler within {timeout:.0f} s"
                return status
            time.sleep(0.2)


def probe_cluster(client: Client, token: str, token_source: str, env: Mapping[str, str], *,
                  timeout: float = WAIT_S) -> ClusterFacts:
    """Reach the scheduler, check the token, start (or reuse) the client and size the cluster.
    Unreachable or no server: the facts carry the problem (the plan goes local, with a warning).
    A wrong token is a KernloopError: it would fail every compile."""
    source = f"sccache --dist-status via the client on 127.0.0.1:{client.port}"

    def facts(servers: int = 0, cpus: int = 0, problem: str | None = None) -> ClusterFacts:
        return ClusterFacts(client.scheduler, servers, cpus, client.home, source, problem)

    why = reach(client.scheduler)
    if why is not None:
        return facts(problem=f"scheduler {client.scheduler} unreachable ({why})")
    refused = check_token(client.scheduler, token)
    if refused is not None:
        raise KernloopError(f"scheduler {client.scheduler}: {refused} from {token_source}",
                            f"give that scheduler's client token in {token_source.split('=')[0]}")
    client.write_config(token)
    client.start(env)
    status = client.wait(env, timeout)
    if isinstance(status, str):
        return facts(problem=status)
    return facts(*status)


# -- what a build distributed ----------------------------------------------------------------


@dataclass(frozen=True)
class DistCounts:
    """One build on the cluster, for the summary and ``--json``."""

    scheduler: str
    servers: int
    cpus: int
    compiles: int  # compile jobs the build servers ran
    local_fallbacks: int  # compiles sccache meant to distribute and ran locally instead
    errors: int  # failed distributed attempts sccache counted (dist_errors)
    reason: str | None = None  # the first fallback's reason, from the client's log

    def describe(self) -> str:
        return (f"distributed: {self.compiles} compiles on {dist.servers_text(self.servers)} ({self.cpus} CPUs) via "
                f"{self.scheduler}; {self.local_fallbacks} local fallbacks, {self.errors} errors")

    def warning(self) -> str | None:
        """One line when any compile fell back to local (sccache does that silently)."""
        n = max(self.local_fallbacks, self.errors)
        if not n:
            return None
        why = f": {self.reason}" if self.reason else ""
        return (f"distributed compile: {n} compile{'s' if n != 1 else ''} fell back to local{why} "
                "(the build went on; check the scheduler and its build servers)")

    def to_json(self) -> dict[str, object]:
        return {"scheduler": self.scheduler, "servers": self.servers, "cpus": self.cpus, "compiles": self.compiles,
                "local_fallbacks": self.local_fallbacks, "errors": self.errors, "reason": self.reason}


def fallback_lines(text: str) -> list[str]:
    """The reasons of the fallbacks in a piece of the client's log."""
    out = []
    for line in text.splitlines():
        m = _FALLBACK_RE.search(line)
        if m:
            out.append(_short_reason(m.group(1)))
    return out


def _short_reason(text: str) -> str:
    # sccache nests its errors as JSON: {"description": ..., "cause": {...}}; keep the innermost
    # description that says something, else the text cut short.
    descriptions = re.findall(r'"description":"([^"]*)"', text)
    if descriptions:
        return descriptions[-1][:200] if len(descriptions) == 1 else f"{descriptions[0]}: {descriptions[-1]}"[:240]
    return text.strip()[:200]


def _stats(client: Client, env: Mapping[str, str]) -> tuple[int, int] | None:
    res = proc.try_run([client.program, "--show-stats", "--stats-format", "json"], env=client.env(env), timeout=30)
    if res is None or not res.ok:
        return None
    try:
        stats = json.loads(res.stdout).get("stats", {})
    except (ValueError, AttributeError):
        return None
    compiles = sum(int(v) for v in (stats.get("dist_compiles") or {}).values())
    return compiles, int(stats.get("dist_errors", 0))


class DistProbe:
    """Counts one build's distributed compiles: ``begin()`` before, ``end()`` after."""

    def __init__(self, client: Client, env: Mapping[str, str], servers: int, cpus: int) -> None:
        self.client, self.env, self.servers, self.cpus = client, dict(env), servers, cpus
        self._before: tuple[int, int] | None = None
        self._log_offset = 0

    def begin(self) -> None:
        self._before = _stats(self.client, self.env)
        self._log_offset = self.client.log.stat().st_size if self.client.log.exists() else 0

    def end(self) -> DistCounts:
        after = _stats(self.client, self.env)
        before = self._before or (0, 0)
        if after is None:  # the client died with the build: count what the log says
            after = before
        if after[0] < before[0] or after[1] < before[1]:
            before = (0, 0)  # restarted in between
        reasons: list[str] = []
        if self.client.log.exists():
            with self.client.log.open("rb") as fh:
                fh.seek(self._log_offset if self._log_offset <= self.client.log.stat().st_size else 0)
                reasons = fallback_lines(fh.read().decode(errors="replace"))
        return DistCounts(self.client.scheduler, self.servers, self.cpus, after[0] - before[0], len(reasons),
                          after[1] - before[1], reasons[0] if reasons else None)
