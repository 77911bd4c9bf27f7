"""``python -m buildtools torch {index,check,bump}``: keep torch, CUDA, the driver and the pins aligned.

- ``index``: the PyTorch wheel index (and pip/uv flags) for a platform and channel, ``auto`` from the driver;
- ``check``: does the installed torch fit nvcc, the driver, Python and the compatibility matrix;
- ``bump``: move every torch/torchvision/torchaudio pin in requirements/*.txt and pyproject.toml.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from buildtools.cli.main import PROJECT_ROOT, print_usage
from buildtools.errors import KernloopError
from buildtools.util.jsonable import to_jsonable
from buildtools.checks.findings import MARKS

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "torch",
        help="torch/CUDA alignment: wheel index, installed-stack check, pin bumps",
        description="Pick PyTorch wheel indexes, check that torch, nvcc and the driver fit, and bump torch pins.",
    )
    sub = p.add_subparsers(dest="torch_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: print_usage(p))

    ix = sub.add_parser(
        "index",
        help="print the pip/uv flags for the PyTorch wheel index of a platform",
        description="Print the pip (or uv) options that take torch from the right PyTorch wheel index. "
        "auto: the newest CUDA index the NVIDIA driver supports, else ROCm, else CPU. "
        "The explanation goes to stderr, so $(python -m buildtools torch index) is just the flags.",
    )
    ix.add_argument("--platform", default="auto", metavar="P",
                    help="cu130, cu128, cu126, ..., rocm6.4, ..., cpu, xpu, or auto (default)")
    # Validated by resolve_index (not argparse choices) so a typo is one line, not usage + error.
    ix.add_argument("--channel", default="stable", metavar="C",
                    help="stable releases (default), test (release candidates) or nightly")
    ix.add_argument("--torch", dest="torch_version", metavar="VERSION",
                    help="the torch release to choose for (default: the newest in the matrix)")
    ix.add_argument("--uv", action="store_true", help="uv flags (adds --index-strategy unsafe-best-match)")
    ix.add_argument("--primary", action="store_true",
                    help="--index-url instead of --extra-index-url (install torch packages only from it)")
    ix.add_argument("--url", action="store_true", help="print only the index URL")
    ix.add_argument("--driver-cuda", metavar="X.Y",
                    help="choose auto for a driver supporting this CUDA (e.g. another machine's) instead of detecting")
    ix.add_argument("--json", action="store_true", help="print the choice as JSON")
    ix.set_defaults(func=_index)

    ck = sub.add_parser(
        "check",
        help="check that the installed torch, nvcc and NVIDIA driver fit",
        description="Say whether the installed torch, nvcc, the NVIDIA driver and Python fit each other and "
        "the compatibility matrix. Exit 0: they fit (warnings allowed); 1: a mismatch that breaks builds or runs.",
    )
    ck.add_argument("--python", type=Path, metavar="PATH", help="the interpreter whose torch to check (default: this one)")
    ck.add_argument("--nvcc", type=Path, metavar="PATH", help="the nvcc to check (default: found as for presets)")
    ck.add_argument("--json", action="store_true", help="print the findings as JSON")
    ck.set_defaults(func=_check)

    bp = sub.add_parser(
        "bump",
        help="move every torch/torchvision/torchaudio pin to a new release",
        description="Update every torch/torchvision/torchaudio == pin in requirements/*.txt and pyproject.toml. "
        "Comments, environment markers and each pin's local tag (+cpu, +cu130) are kept. torchvision and "
        "torchaudio follow the compatibility matrix unless given. A combination the matrix does not know is "
        "refused unless --force.",
    )
    bp.add_argument("version", metavar="TORCH_VERSION", help="e.g. 2.15.0 (no local tag)")
    bp.add_argument("--torchvision", metavar="X", help="torchvision version (default: from the matrix)")
    bp.add_argument("--torchaudio", metavar="Y", help="torchaudio version (default: from the matrix)")
    bp.add_argument("--dry-run", action="store_true", help="print a unified diff; write nothing")
    bp.add_argument("--force", action="store_true", help="write a combination the matrix does not know")
    bp.add_argument("--project", type=Path, default=PROJECT_ROOT, metavar="DIR",
                    help="project root holding requirements/ and pyproject.toml (default: this checkout)")
    bp.set_defaults(func=_bump)



def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _index(args: argparse.Namespace) -> int:
    from buildtools.torchenv.driver import DriverFacts, detect_nvidia_driver, detect_rocm
    from buildtools.torchenv.index import install_flags, resolve_index
    from buildtools.torchenv.matrix import load_matrix
    from buildtools.versions import release_tuple

    matrix = load_matrix()
    driver = rocm = None
    if args.platform.strip().lower() == "auto":
        if args.driver_cuda:
            try:
                release_tuple(args.driver_cuda)
            except ValueError:
                raise KernloopError(f"--driver-cuda {args.driver_cuda!r} is not a CUDA version", "use e.g. --driver-cuda 12.8") from None
            driver = DriverFacts(None, args.driver_cuda, "--driver-cuda")
        else:
            driver = detect_nvidia_driver()
            rocm = None if driver else detect_rocm()
    choice = resolve_index(args.platform, args.channel, matrix, torch_version=args.torch_version,
                           driver=driver, rocm=rocm)
    flags = install_flags(choice, uv=args.uv, primary=args.primary)
    if args.json:
        print(json.dumps({
            "platform": choice.platform.tag, "channel": choice.channel, "url": choice.url,
            "torch_release": choice.release, "reason": choice.reason, "notes": list(choice.notes),
            "flags": flags, "tool": "uv" if args.uv else "pip",
        }, indent=2))
        return 0
    _err(f"# {choice.platform.tag} ({choice.channel}, torch {choice.release}): {choice.reason}")
    for note in choice.notes:
        _err(f"# note: {note}")
    print(choice.url if args.url else shlex.join(flags))
    return 0




def _check(args: argparse.Namespace) -> int:
    from buildtools.checks.torch import check_alignment
    from buildtools.torchenv.driver import detect_nvidia_driver
    from buildtools.torchenv.matrix import load_matrix
    from buildtools.torchenv.probe import detect_nvcc, require_torch, target_env

    matrix = load_matrix()
    target = target_env(args.python)
    torch = require_torch(target)
    nvcc, nvcc_notes = detect_nvcc(args.nvcc)
    driver = detect_nvidia_driver()
    report = check_alignment(torch, target.python.version, nvcc, driver, matrix)
    if args.json:
        print(json.dumps({
            "fits": report.ok,
            "torch": to_jsonable(torch),
            "python": to_jsonable(target.python),
            "nvcc": to_jsonable(nvcc),
            "driver": to_jsonable(driver),
            "items": [to_jsonable(i) for i in report.items],
        }, indent=2))
        return 0 if report.ok else 1
    print(f"python {target.python.version} ({target.python.executable})")
    for item in report.items:
        print(f"{MARKS[item.status]} {item.subject:<7} {item.message}")
    if nvcc is None:
        for note in nvcc_notes[-1:]:
            print(f"      {note}")
    verdict = "fit" if report.ok else "do NOT fit"
    extra = " (with warnings)" if report.worst == "warning" else ""
    print(f"torch, nvcc and driver {verdict}{extra}")
    return 0 if report.ok else 1


def _bump(args: argparse.Namespace) -> int:
    from buildtools.torchenv.bump import collect_files, plan_bump, resolve_targets, write_plan
    from buildtools.torchenv.matrix import load_matrix

    matrix = load_matrix()
    targets = resolve_targets(args.version, args.torchvision, args.torchaudio, matrix)
    project = args.project.resolve()
    plan = plan_bump(collect_files(project), targets, matrix)
    if plan.problems and not args.force:
        more = f" (and {len(plan.problems) - 1} more)" if len(plan.problems) > 1 else ""
        raise KernloopError(f"unknown combination: {plan.problems[0]}{more}",
                            "check the versions, update buildtools/torchenv/torch_matrix.json, or pass --force")
    for problem in plan.problems:
        _err(f"warning: {problem} (written anyway: --force)")
    for note in (*plan.targets.notes, *plan.notices):
        _err(f"note: {note}")
    if plan.pins_seen == 0:
        raise KernloopError(f"no torch/torchvision/torchaudio == pins in {project}/requirements/*.txt or pyproject.toml",
                            "pin torch there first (e.g. torch==2.14.1 in requirements/torch-cuda.txt)")
    t = plan.targets
    target_line = f"torch {t.torch}, torchvision {t.torchvision}, torchaudio {t.torchaudio}"
    if not plan.files:
        print(f"every pin already names {target_line}; nothing to change")
        return 0
    if args.dry_run:
        for edit in plan.files:
            sys.stdout.write(edit.diff())
        _err(f"dry run: {len(plan.edits)} pin(s) in {len(plan.files)} file(s) would move to {target_line}; nothing written")
        return 0
    write_plan(plan, project)
    for e in plan.edits:
        print(f"{e.file}:{e.line}: {e.package} {e.old} -> {e.new}")
    print(f"updated {len(plan.edits)} pin(s) in {len(plan.files)} file(s) to {target_line}")
    return 0
