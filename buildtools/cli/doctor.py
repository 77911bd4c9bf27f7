"""``python -m buildtools doctor [--json]``: every fact with its source, then every check with its fix.

Exit status: 0 when nothing is an error (warnings allowed), 1 when something is.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from buildtools.cli.main import add_source_dir, source_dir_of
from buildtools.checks.findings import MARKS

__all__ = ["register", "run"]



def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check the toolchain, the machine and the built modules; say how to fix what is wrong",
        description="Print every detected fact with its source, then run the checks: torch CUDA vs nvcc, "
        "host compiler vs nvcc's supported range, ccache/cmake/ninja versions, the presets files and "
        "[tool.buildtools], writable source/package/build dirs, the build tool CMake cached, stale or duplicate "
        "_C/_moe_C files and which one `import kernloop` loads, a build not installed (by content), an "
        "out-of-date build dir, free disk, a killed build still running. "
        "Exits 1 if any check fails.",
    )
    p.add_argument("--json", action="store_true", help="facts and checks as one JSON object on stdout")
    p.add_argument("--preset", default="release", metavar="NAME", help="whose build dir to check (default: release)")
    p.add_argument("--nvcc", type=Path, metavar="PATH", help="check this nvcc instead of the detected one")
    p.add_argument("--python", type=Path, metavar="PATH", help="check this Python instead of this one")
    add_source_dir(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from buildtools.checks.doctor import run_checks, worst
    from buildtools.checks.observe import observe
    from buildtools.checks.observe_tree import build_dir_for
    from buildtools.util.jsonable import to_jsonable
    from buildtools.cli.render import fact_rows
    from buildtools.session import PlanOptions, detect_facts

    source_dir = source_dir_of(args)
    facts = detect_facts(PlanOptions(source_dir=source_dir, nvcc=args.nvcc, python=args.python))
    build_dir = build_dir_for(source_dir, args.preset)  # an unreadable presets file is a finding
    obs = observe(facts, build_dir, preset=args.preset)
    findings = run_checks(facts, obs)
    level = worst(findings)
    rows = fact_rows(facts)

    if args.json:
        print(json.dumps({
            "ok": level != "error",
            "worst": level,
            "facts": [{"name": n, "value": v, "source": s} for n, v, s in rows],
            "checks": [{"check": f.check, "level": f.level, "message": f.message, "fix": f.fix} for f in findings],
            "notes": list(facts.notes),
            "raw_facts": to_jsonable(facts),
        }, indent=2))  # fmt: skip
        return 1 if level == "error" else 0

    width = max(len(n) for n, _, _ in rows)
    print("facts:")
    for name, value, source in rows:
        print(f"  {name:<{width}}  {value}  [from: {source}]")
    for note in facts.notes:
        print(f"  note: {note}")
    print("checks:")
    for f in findings:
        print(f"  {MARKS[f.level]}  {f.message}")
        if f.fix and f.level != "ok":
            print(f"        fix: {f.fix}")
    counts = {lvl: sum(1 for f in findings if f.level == lvl) for lvl in ("error", "warning")}
    summary = f"{counts['error']} error(s), {counts['warning']} warning(s)"
    print(("doctor: " + summary) if level in ("error", "warning") else "doctor: all good", file=sys.stderr)
    return 1 if level == "error" else 0
