"""``python -m buildtools wheels align``: keep only the CUDA-variant wheels that match torch's CUDA major.

Packages come from ``--package NAME[==VERSION]`` and from ``[tool.buildtools] cuda-variant-packages``
in pyproject.toml. pip (``<python> -m pip``) or uv does the work; ``--dry-run`` prints the commands.
Arguments after ``--`` go to pip/uv install (e.g. ``-- --no-index --find-links wheels/``).
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from buildtools.cli.main import PROJECT_ROOT, print_usage
from buildtools.errors import KernloopError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "wheels",
        help="CUDA-variant wheels (<pkg>-cu12 / <pkg>-cu13) that match torch",
        description="Manage wheels shipped as CUDA-major variants.",
    )
    sub = p.add_subparsers(dest="wheels_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: print_usage(p))
    al = sub.add_parser(
        "align",
        help="keep only the <pkg>-cuXX variant matching torch's CUDA major",
        description="For each package shipped as CUDA-major variants (<pkg>-cu12, <pkg>-cu13), keep only the "
        "variant matching the installed torch's CUDA major, pinned to the installed <pkg>'s version. With a "
        "CPU or ROCm torch the CUDA variants are removed (--keep keeps them). Packages: --package and "
        "[tool.buildtools] cuda-variant-packages in pyproject.toml. Arguments after -- go to pip/uv install.",
    )
    al.add_argument("--package", action="append", default=[], metavar="NAME[==VERSION]",
                    help="a meta package name (repeatable); ==VERSION pins the variant to that version")
    al.add_argument("--dry-run", action="store_true", help="print the pip/uv commands; change nothing")
    al.add_argument("--keep", action="store_true", help="with a CPU/ROCm torch, keep the CUDA variants")
    al.add_argument("--uv", action="store_true", help="use uv pip instead of python -m pip")
    al.add_argument("--python", type=Path, metavar="PATH",
                    help="the environment to align (its torch decides; default: this interpreter)")
    al.add_argument("--project", type=Path, default=PROJECT_ROOT, metavar="DIR",
                    help="where pyproject.toml is read from (default: this checkout)")
    al.add_argument("install_args", nargs="*", metavar="-- PIP_ARGS",
                    help="extra arguments for pip/uv install, after --")
    al.set_defaults(func=_align)



def _align(args: argparse.Namespace) -> int:
    from buildtools.torchenv.probe import installed_distributions, require_torch, target_env
    from buildtools.torchenv.wheels import (
        CONFIG_KEY,
        align_commands,
        configured_packages,
        find_uv,
        parse_package_arg,
        plan_align,
        run_commands,
    )

    if args.install_args and not args.install_args[0].startswith("-"):
        # A bare name here would be handed to pip install; packages to align go with --package.
        raise KernloopError(f"unexpected argument {args.install_args[0]!r}",
                            "name packages with --package NAME; pip/uv options go after --, e.g. -- --no-index")
    requests = [parse_package_arg(p) for p in args.package]
    for name in configured_packages(args.project):
        req = parse_package_arg(name)
        if all(r.name != req.name for r in requests):
            requests.append(req)
    if not requests:
        raise KernloopError("no packages to align",
                            f"pass --package NAME, or list them in pyproject.toml: [tool.buildtools] {CONFIG_KEY} = [\"nixl\"]")
    target = target_env(args.python)
    torch = require_torch(target)
    python = target.python.executable
    plan = plan_align(requests, installed_distributions(python), torch.version, torch.cuda, torch.hip, keep=args.keep)
    for pkg in plan.packages:
        print(pkg.message)
    uv = None
    if args.uv:
        uv = find_uv(python)
        if uv is None:
            if not args.dry_run:
                raise KernloopError("uv not found (next to the interpreter or on PATH)", "pip install uv, or drop --uv")
            uv = "uv"
    cmds = align_commands(plan, python, uv=uv, extra=args.install_args)
    if args.dry_run:
        for cmd in cmds:
            print(f"$ {shlex.join(cmd)}")
        if cmds:
            print("dry run: nothing changed")
        return 0 if plan.ok else 1
    run_commands(cmds, plan)
    for pkg in plan.packages:
        if pkg.install and pkg.uninstall:  # the meta package usually requires the variant just removed
            print(f"note: pip check may report that {pkg.name} requires {', '.join(pkg.uninstall)}; "
                  "expected: the variant was swapped on purpose")
    return 0 if plan.ok else 1
