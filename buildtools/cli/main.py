"""``python -m buildtools <command>``: one argparse front end for every command.

Each command lives in its own module exposing ``register(subparsers)``, which
adds a subparser whose ``func(args) -> int`` runs it. Modules are imported only
when their command runs (``--help`` and ``presets`` stay fast).
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from buildtools.errors import EXIT_USER_ERROR, KernloopError

__all__ = ["main", "COMMANDS", "PROJECT_ROOT", "add_source_dir", "source_dir_of", "print_usage", "terminate_as_interrupt",
           "positive_int"]

# buildtools/ sits in the project root: the default for --source-dir / --project.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# command name -> module (relative to buildtools) that registers it
COMMANDS: dict[str, str] = {
    "presets": ".presets",
    "build": ".build",
    "doctor": ".doctor",
    "watch": ".watch",
    "torch": ".torch",
    "wheels": ".wheels",
    "patches": ".patches",
    "dist": ".dist",
}


def add_source_dir(parser: argparse.ArgumentParser) -> None:
    """The ``--source-dir`` option every project-level command shares."""
    parser.add_argument("--source-dir", type=Path, metavar="DIR", help=f"project root (default: {PROJECT_ROOT})")


def source_dir_of(args: argparse.Namespace, *, need_cmake: bool = False) -> Path:
    """The absolute project root from ``--source-dir`` (default: this checkout), checked."""
    source_dir = Path(os.path.abspath(args.source_dir or PROJECT_ROOT))
    if need_cmake:
        if not (source_dir / "CMakeLists.txt").is_file():
            raise KernloopError(f"{source_dir} has no CMakeLists.txt", "pass --source-dir with the project root")
    elif not source_dir.is_dir():
        raise KernloopError(f"--source-dir {source_dir}: no such directory", "pass the project root")
    return source_dir


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts: a whole number >= 1, else argparse's usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def print_usage(parser: argparse.ArgumentParser) -> int:
    """A command group run without its subcommand: its help on stderr, usage-error exit."""
    parser.print_help(sys.stderr)
    return EXIT_USER_ERROR


def terminate_as_interrupt() -> None:
    """Treat SIGTERM and SIGHUP (a closed terminal) like Ctrl-C in a command's main thread: the
    children run in their own sessions, so without this a ``kill`` or a closed window would end us
    but leave ninja building. Ctrl-C's path stops ninja, waits for it, and releases the lock."""
    import threading

    if threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, handler)


def _parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m buildtools",
        description="kernloop build orchestrator: detect the machine, plan the build, "
        "write CMakeUserPresets.json, build and install the kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if selected in (None, name):
            importlib.import_module(module, __package__).register(sub)
        else:  # listed in --help without importing the module
            sub.add_parser(name, help=f"see: python -m buildtools {name} --help")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args_list if not a.startswith("-")), None)
    if selected not in COMMANDS:
        selected = None
    try:
        parser = _parser(selected)
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USER_ERROR if args_list else 0
        return int(args.func(args) or 0)
    except KernloopError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a state of the filesystem (full, read-only): the cause and the fix, no traceback
        from buildtools.util.os_errors import from_os_error

        what = f"use {exc.filename}" if exc.filename else "finish"
        print(from_os_error(exc, what).one_line(), file=sys.stderr)
        return EXIT_USER_ERROR
