"""``python -m buildtools build``: presets (when the machine changed), configure (when needed),
build with a progress bar, install into the source package, and a summary."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from buildtools.cli.main import add_source_dir, source_dir_of

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "build",
        help="build and install the kernels (presets and configure only when needed)",
        description="Rewrite CMakeUserPresets.json only if torch/nvcc/Python/the launcher changed, "
        "configure only if needed, build with a progress bar, install _C/_moe_C into kernloop/, and "
        "summarise: TUs rebuilt, time, compiler-cache hits, slowest TUs, installed files. "
        "Planner overrides come from MAX_JOBS, NVCC_THREADS, TORCH_CUDA_ARCH_LIST, CMAKE_BUILD_TYPE, KERNLOOP_RAM_BUDGET.",
    )
    p.add_argument("--preset", default="release", metavar="NAME", help="configure/build preset (default: release)")
    p.add_argument("--target", default="install", metavar="T",
                   help="ninja target; 'install' (default) builds everything and installs into the source tree")
    p.add_argument("--clean", action="store_true", help="empty the build directory first")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="one line per step instead of a progress bar")
    p.add_argument("--remote-cache", metavar="URL",
                   help="shared compiler cache behind the local one (redis://, http://, file://, s3://, or off; "
                   "env KERNLOOP_REMOTE_CACHE; [tool.buildtools] remote-cache); see docs/shared-cache.md")
    p.add_argument("--remote-cache-mode", metavar="MODE",
                   help="read-only (default) or read-write (env KERNLOOP_REMOTE_CACHE_MODE)")
    add_source_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from buildtools.run.build import BuildOptions, run_build, terminate_as_interrupt

    source_dir = source_dir_of(args, need_cmake=True)
    options = BuildOptions(
        source_dir=source_dir,
        preset=args.preset,
        target=args.target,
        clean=args.clean,
        progress=False if args.no_progress else None,
    )
    env = dict(os.environ)
    if args.remote_cache is not None or args.remote_cache_mode is not None:
        from buildtools.plan.planner import Overrides
        from buildtools.cache.remote import MODE_VAR, URL_VAR

        # Checked here so that a bad value is one error naming the flag, before anything runs;
        # the planner reads them from the environment like every other override.
        flags = Overrides.from_sources(remote_cache=args.remote_cache, remote_cache_mode=args.remote_cache_mode)
        if flags.remote_cache is not None:
            env[URL_VAR] = flags.remote_cache.value
        if flags.remote_cache_mode is not None:
            env[MODE_VAR] = flags.remote_cache_mode.value
    terminate_as_interrupt()
    result = run_build(options, env=env)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    print(result.summary(), file=sys.stderr)
    return 0 if result.ok else 1
