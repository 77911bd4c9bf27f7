"""``python -m buildtools presets`` (= ``python tools/generate_presets.py``): write CMakeUserPresets.json.

facts (detect) -> plan (pure) -> presets document (pure) -> merge with the existing
file (pure) -> one atomic write with a backup. Output: nothing on the way, warnings
on stderr, one summary line at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from buildtools.util import fileio
from buildtools.cmake import presets
from buildtools.cli.main import add_source_dir, source_dir_of
from buildtools.cli.render import format_plan
from buildtools.errors import KernloopError
from buildtools.util.jsonable import to_jsonable
from buildtools.settings import OVERRIDES, Overrides, add_flags, overrides_help
from buildtools.session import PlanOptions, plan_for

__all__ = ["register", "run", "options_from_args"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "presets",
        help="write CMakeUserPresets.json for this machine",
        description="Detect the toolchain and machine, plan the build (jobs, NVCC_THREADS, job pools, "
        "archs, launcher) and write CMakeUserPresets.json: configure presets release, relwithdebinfo, "
        "debug; build presets that install; workflow presets (cmake --workflow --preset release). "
        "Your own presets in the file are kept. " + overrides_help("presets"),
    )
    p.add_argument("--force-overwrite", action="store_true",
                   help="replace kernloop's presets (or an unreadable file) without asking; a backup is kept")
    p.add_argument("--dry-run", action="store_true", help="write nothing; print the file that would be written")
    p.add_argument("--print-plan", action="store_true", help="show every fact with its source and every number with its reason")
    p.add_argument("--json", action="store_true", help="print facts, plan and presets as one JSON object")
    add_flags(p, "presets")
    p.add_argument("--nvcc", type=Path, metavar="PATH", help="the nvcc to use (default: detected)")
    p.add_argument("--python", type=Path, metavar="PATH", help="the Python with torch to build for (default: this one)")
    add_source_dir(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace, env: Any = None) -> PlanOptions:
    """The CLI's flags (and env vars) as :class:`PlanOptions` for :func:`buildtools.session.plan_for`."""
    env = os.environ if env is None else env
    overrides = Overrides.from_sources(env=env, **{s.keyword: getattr(args, s.keyword, None) for s in OVERRIDES})
    source_dir = source_dir_of(args)
    return PlanOptions(source_dir=source_dir, nvcc=args.nvcc, python=args.python, overrides=overrides, env=env)


def _cmake_command() -> str:
    return "cmake" if shutil.which("cmake") else str(Path(sys.executable).parent / "cmake")


# -- the command -------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    facts, plan = plan_for(options)
    ours = presets.render(plan)
    path = options.source_dir / presets.FILE_NAME
    text = fileio.read_text(path)

    existing = None
    replacing_invalid = False
    if text is not None:
        try:
            existing = presets.parse(text)
        except presets.InvalidPresets as exc:
            if not args.force_overwrite:
                where = f"{path}:{exc.line}" if exc.line else str(path)
                raise KernloopError(f"{where}: {exc.message}; left untouched",
                                    "fix it, or pass --force-overwrite to back it up and replace it") from None
            replacing_invalid = True

    # Said before any question, so the user decides knowing them.
    if "-only plan" in plan.platform.reason:  # a fallback (e.g. CPU-only): said in one line
        print(f"note: {plan.platform.reason}", file=sys.stderr)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    result = presets.merge(existing, ours)
    new_text = presets.dumps(result.document, bom=presets.has_bom(text))
    up_to_date = text == new_text
    clashing = presets.conflicts(existing, ours) if existing is not None else ()
    if clashing and not up_to_date and not args.force_overwrite and not args.dry_run:
        from buildtools.util.prompt import confirm

        question = (f"{path.name} already has kernloop's presets ({', '.join(clashing)}). "
                    "Replace them? Your other presets are kept, the old file is backed up.")
        if not confirm(question, problem=f"{path} already has kernloop's presets ({', '.join(clashing)})",
                       hint="pass --force-overwrite to replace them (your own presets are kept, "
                            "the old file is backed up)", default=True):
            print(f"left {path} unchanged", file=sys.stderr)
            return 1

    saved = None
    if not args.dry_run and not up_to_date:
        saved = fileio.atomic_write_text(path, new_text, keep_backup=True)

    # -- output ----------------------------------------------------------------------------------
    names = presets.preset_names(plan)
    out = sys.stderr if args.json else sys.stdout
    if replacing_invalid:
        print(f"warning: {path} was not valid presets JSON; replaced (backup: {saved})" if saved
              else f"warning: {path} is not valid presets JSON; it would be replaced", file=sys.stderr)

    if args.json:
        print(json.dumps({
            "file": str(path),
            "written": not args.dry_run and not up_to_date,
            "dry_run": bool(args.dry_run),
            "backup": str(saved) if saved else None,
            "presets": list(names),
            "replaced": list(result.replaced),
            "kept": list(result.kept),
            "facts": to_jsonable(facts),
            "plan": to_jsonable(plan),
            "document": result.document,
        }, indent=2))
    elif args.print_plan:
        source_dir_source = "--source-dir" if args.source_dir else "this checkout"
        print(format_plan(facts, plan, source_dir_source))
    elif args.dry_run:
        print(new_text, end="")

    details = [f"presets: {', '.join(names)}"]
    if result.kept:
        details.append(f"kept yours: {', '.join(result.kept)}")
    if saved:
        details.append(f"backup: {saved}")
    next_cmd = f"{_cmake_command()} --workflow --preset {plan.build_type.value.lower()}"
    if args.dry_run:
        verb = f"dry run: {path} is up to date" if up_to_date else f"dry run: would write {path}"
    else:
        verb = f"{path} is up to date" if up_to_date else f"wrote {path}"
    print(f"{verb} ({'; '.join(details)}) -- next: {next_cmd}", file=out)
    return 0
