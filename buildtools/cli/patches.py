"""``python -m buildtools patches check|list``: the platform plugins' patch registries.

``check`` compares each patch package with its registry (a module without an entry, an entry
without a module, a missing or empty field, a target missing from this buildtools) and exits 1
on any problem; it imports no plugin code. ``list`` makes the plan the way ``presets`` does and
shows which patches were applied or skipped, and why.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from buildtools.cli.main import print_usage, source_dir_of
from buildtools.errors import KernloopError

__all__ = ["register", "run_check", "run_list", "format_report"]

EXIT_PROBLEMS = 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "patches",
        help="check or list the platform plugins' patches",
        description="Platform plugins may patch buildtools; every patch has a registry entry (target, why, "
        "how, related upstream change, plan for removal). 'check' finds drift between the registries and "
        "the patch modules; 'list' shows which patches this machine's plan applies.",
    )
    sub = p.add_subparsers(dest="patches_command", metavar="ACTION")
    c = sub.add_parser("check", help="fail when a registry and its patch modules disagree",
                       description="Check every installed plugin's patch package (or the given patch/ "
                       "directories) against its REGISTRY. Exit 1 on any problem.")
    c.add_argument("dirs", nargs="*", type=Path, metavar="PATCH_DIR",
                   help="a plugin's patch/ directory to check instead of the installed plugins' "
                   "(e.g. from its source tree)")
    c.set_defaults(func=run_check)
    ls = sub.add_parser("list", help="show which patches the plan applies, and why others are skipped",
                        description="Make the plan as 'presets' does (writing nothing) and list every "
                        "plugin's patches: applied, skipped or failed, with the reason.")
    ls.add_argument("--source-dir", type=Path, metavar="DIR", help="project root (default: this checkout)")
    ls.add_argument("--python", type=Path, metavar="PATH", help="the Python with torch to build for")
    ls.add_argument("--nvcc", type=Path, metavar="PATH", help="the nvcc to use (default: detected)")
    ls.add_argument("-v", "--verbose", action="store_true", help="also show each patch's documentation")
    ls.add_argument("--json", action="store_true", help="print platforms and patches as JSON")
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: print_usage(p))



# -- check ---------------------------------------------------------------------------------------------
def _packages_from_dirs(dirs: list[Path]) -> list[Any]:
    from buildtools.plugins.registry import PatchPackage

    found = []
    for d in dirs:
        d = Path(os.path.abspath(d))
        if not (d / "__init__.py").is_file():
            raise KernloopError(f"{d} is not a patch package (no __init__.py)",
                                "pass a plugin's patch/ directory, e.g. src/kernloop_rocm/patch")
        found.append(PatchPackage(plugin=d.parent.name, package=f"{d.parent.name}.{d.name}", path=d))
    return found


def run_check(args: argparse.Namespace) -> int:
    from buildtools.plugins.patches import check
    from buildtools.plugins.registry import find_patch_package, read_registry
    from buildtools.plugins.spec import discover

    if args.dirs:
        packages = _packages_from_dirs(list(args.dirs))
    else:
        packages = [p for p in (find_patch_package(s) for s in discover() if not s.builtin) if p is not None]
    if not packages:
        print("patches check: no installed platform plugin has a patch package")
        return 0
    problems: list[str] = []
    count = 0
    for package in packages:
        found = check(package, os.environ)
        count += len(read_registry(package).entries)
        problems += found
        if not found:
            print(f"ok: {package.package} ({package.path}): registry and modules match")
    for line in problems:
        print(f"problem: {line}")
    if problems:
        print(f"patches check: {len(problems)} problem(s) in {len(packages)} patch package(s) -- fix the "
              "REGISTRY in patch/__init__.py or the modules beside it")
        return EXIT_PROBLEMS
    print(f"patches check: {count} patch(es) in {len(packages)} package(s), all documented")
    return 0


# -- list ----------------------------------------------------------------------------------------------
def format_report(report: Any, entries: dict[tuple[str, str], Any], verbose: bool = False) -> str:
    from buildtools.plugins.registry import DOC_FIELDS

    if report.version is not None:
        lines = [f"buildtools {report.version.text} (from {report.version.source})"]
    else:
        from buildtools import __version__

        lines = [f"buildtools {__version__}"]
    parts = []
    for p in report.platforms:
        text = f"{p.name} ({p.source})"
        if p.state != "enabled":
            text += f" [{p.state}]"
        parts.append(text)
    lines.append("platforms: " + ", ".join(parts))
    lines += [f"warning: {w}" for w in report.warnings]
    if not report.patches:
        lines.append("patches: none")
    for status in report.patches:
        lines.append(f"{status.name}: {status.state} -- {status.reason}")
        lines.append(f"    target {status.target} ({status.point})")
        entry = entries.get((status.plugin, status.module))
        if verbose and entry is not None:
            lines.append(f"    buildtools {entry.buildtools}")
            for key, heading in DOC_FIELDS.items():
                lines.append(f"    {heading}: {getattr(entry, key)}")
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    from buildtools.util.jsonable import to_jsonable
    from buildtools.plugins.registry import find_patch_package, read_registry
    from buildtools.plugins.spec import discover
    from buildtools.session import PlanOptions, plan_with_report

    source_dir = source_dir_of(args)
    _facts, plan, report = plan_with_report(PlanOptions(source_dir=source_dir, nvcc=args.nvcc, python=args.python,
                                                        interactive=False))
    entries = {}
    for spec in discover():
        package = None if spec.builtin else find_patch_package(spec)
        if package is not None:
            entries.update({(e.plugin, e.module): e for e in read_registry(package).entries})
    if args.json:
        print(json.dumps({
            "plan_platform": plan.platform.value,
            "report": to_jsonable(report),
            "entries": [to_jsonable(e) for e in entries.values()],
        }, indent=2))
    else:
        print(format_report(report, entries, verbose=args.verbose))
        print(f"plan: {plan.platform.reason}")
    return 0
