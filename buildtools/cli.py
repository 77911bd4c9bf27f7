"""``python -m buildtools <command>``: one argparse front end for every command.

Each command lives in its own module exposing ``register(subparsers)``, which
adds a subparser whose ``func(args) -> int`` runs it. Modules are imported only
when their command runs (``--help`` and ``presets`` stay fast).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .errors import EXIT_USER_ERROR, KernloopError

__all__ = ["main", "COMMANDS"]

# command name -> module (relative to buildtools) that registers it
COMMANDS: dict[str, str] = {
    "presets": ".presets_cmd",
    "build": ".build_cmd",
    "doctor": ".doctor_cmd",
    "watch": ".watch_cmd",
    "torch": ".torch_cmd",
    "wheels": ".wheels_cmd",
    "patches": ".patches_cmd",
}


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
