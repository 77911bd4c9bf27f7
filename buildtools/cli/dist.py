"""``python -m buildtools dist up|status|down``: a loopback sccache-dist cluster to try distributed compile."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from buildtools.cli.main import PROJECT_ROOT, positive_int, print_usage
from buildtools.errors import KernloopError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dist", help="a loopback sccache-dist cluster (scheduler + build servers) to try --distributed with",
        description="Start, show or stop a sccache-dist scheduler and N overlay build servers on 127.0.0.1 "
        "(needs root, overlayfs and bubblewrap). Their configs and the client token live in --dir, mode "
        "0600. For a real multi-host cluster see docs/distributed.md.")
    p.set_defaults(func=lambda args: print_usage(p))
    sub = p.add_subparsers(dest="dist_command", metavar="up|status|down")
    for name, text in (("up", "start the scheduler and the build servers"), ("status", "show what runs"),
                       ("down", "stop the processes dist up started (only those)")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--dir", type=Path, metavar="DIR",
                       help="where configs, logs, PIDs and build dirs go (default: ~/.cache/kernloop/dist/cluster)")
        if name == "up":
            s.add_argument("--servers", type=positive_int, default=1, metavar="N", help="build servers (default 1)")
            s.add_argument("--port", type=positive_int, metavar="PORT",
                           help="the scheduler's port; servers take the next N (default 10600)")
        if name == "status":
            s.add_argument("--json", action="store_true", help="print the cluster as JSON")
        s.set_defaults(func=globals()[f"_{name}"])


def _dir(args: argparse.Namespace) -> Path:
    from buildtools.run.cluster import default_dir

    return Path(os.path.abspath(args.dir)) if args.dir else default_dir(os.environ)


def _up(args: argparse.Namespace) -> int:
    from buildtools.run import cluster

    if args.port is not None and args.port + args.servers > 65535:
        raise KernloopError(f"--port {args.port}: no room for {args.servers} servers above it", "pass a lower --port")
    c = cluster.up(_dir(args), args.servers, args.port or cluster.DEFAULT_PORT, print, source_dir=PROJECT_ROOT)
    print(f"use it: --distributed {c.scheduler} with KERNLOOP_DIST_TOKEN_FILE={c.token_file}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from buildtools.run import cluster

    where = _dir(args)
    c = cluster.read(where)
    if c is None:
        print(json.dumps(None) if args.json else f"no cluster recorded in {where}")
        return 1
    running = {name: cluster.alive(pid, c.configs[name]) for name, pid in c.pids.items()}
    if args.json:
        print(json.dumps({**c.to_json(), "running": running}, indent=1))
    else:
        print(f"scheduler {c.scheduler}; token file {c.token_file}")
        for name, pid in c.pids.items():
            print(f"  {name}: pid {pid} {'running' if running[name] else 'NOT running'} ({c.configs[name]})")
    return 0 if all(running.values()) else 1


def _down(args: argparse.Namespace) -> int:
    from buildtools.run import cluster

    cluster.down(_dir(args), print)
    return 0
