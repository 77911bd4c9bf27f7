"""``python -m buildtools watch [-- PYTEST ARGS]``: rebuild on save of csrc/, cmake/, CMakeLists.txt,
then run the given pytest selection; Ctrl-C stops without leaving anything half-written."""
from __future__ import annotations

import argparse
from typing import Any

from buildtools.cli.main import add_source_dir, source_dir_of, terminate_as_interrupt

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "watch",
        help="rebuild when csrc/, cmake/ or CMakeLists.txt change, then run tests",
        description="Build once, then watch csrc/, cmake/ and CMakeLists.txt; after each save (debounced) "
        "rebuild and install like `build`, then run pytest with the arguments after `--`, e.g. "
        "`python -m buildtools watch -- tests/kernels -k rms_norm -x`.",
    )
    p.add_argument("--preset", default="release", metavar="NAME", help="configure/build preset (default: release)")
    p.add_argument("--debounce-ms", type=int, default=1600, metavar="MS",
                   help="longest time to gather a burst of saves into one rebuild (default: 1600)")
    p.add_argument("--quiet-ms", type=int, default=300, metavar="MS",
                   help="rebuild once nothing changed for this long (default: 300)")
    p.add_argument("--no-initial", action="store_true", help="do not build and test once at start")
    p.add_argument("--no-progress", action="store_true", help="one line per build step instead of a progress bar")
    add_source_dir(p)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after `--`: arguments for pytest")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from buildtools.run.watch import WatchOptions, watch_loop

    rest = list(args.pytest_args or [])
    if rest and rest[0] == "--":
        rest = rest[1:]
    source_dir = source_dir_of(args, need_cmake=True)
    options = WatchOptions(
        source_dir=source_dir,
        preset=args.preset,
        pytest_args=tuple(rest),
        debounce_ms=max(1, args.debounce_ms),
        step_ms=max(1, args.quiet_ms),
        initial=not args.no_initial,
        progress=False if args.no_progress else None,
    )
    terminate_as_interrupt()
    return watch_loop(options)
