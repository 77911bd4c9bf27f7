"""``python -m buildtools build``: presets (when the machine changed), configure (when needed),
build with a progress bar, install into the source package, and a summary."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from buildtools.cli.main import add_source_dir, source_dir_of, terminate_as_interrupt
from buildtools.settings import add_flags, flags_as_env, overrides_help

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "build",
        help="build and install the kernels (presets and configure only when needed)",
        description="Rewrite CMakeUserPresets.json only if torch/nvcc/Python/the launcher changed, "
        "configure only if needed, build with a progress bar, install _C/_moe_C into kernloop/, and "
        "summarise: TUs rebuilt, time, compiler-cache hits, slowest TUs, installed files. "
        + overrides_help("build"),
    )
    p.add_argument("--preset", default="release", metavar="NAME", help="configure/build preset (default: release)")
    p.add_argument("--target", default="install", metavar="T",
                   help="ninja target; 'install' (default) builds everything and installs into the source tree")
    p.add_argument("--clean", action="store_true", help="empty the build directory first")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--explain", action="store_true",
                   help="say why each TU was rebuilt (ninja -d explain) and what the compiler cache said")
    p.add_argument("--no-progress", action="store_true", help="one line per step instead of a progress bar")
    add_flags(p, "build")
    add_source_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from buildtools.run.build import BuildOptions, run_build

    source_dir = source_dir_of(args, need_cmake=True)
    options = BuildOptions(
        source_dir=source_dir,
        preset=args.preset,
        target=args.target,
        clean=args.clean,
        progress=False if args.no_progress else None,
        explain=args.explain,
    )
    env = dict(os.environ)
    env.update(flags_as_env(args, "build"))
    terminate_as_interrupt()
    result = run_build(options, env=env)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    print(result.summary(), file=sys.stderr)
    return 0 if result.ok else 1
