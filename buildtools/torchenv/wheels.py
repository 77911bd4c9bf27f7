"""``wheels align``: keep only the ``<pkg>-cuXX`` wheel that matches torch's CUDA major.

Packages such as nixl ship one meta package (``nixl``) plus CUDA-major variants (``nixl-cu12``,
``nixl-cu13``); the meta package usually pulls the cu12 one, and a CUDA 13 torch then fails with
``libcudart.so.12: cannot open shared object file``. The planner here is pure (installed
distributions + torch facts in, commands out); ``run_commands`` executes them.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from packaging.version import InvalidVersion, Version

from buildtools.util import proc
from buildtools.settings import load_config
from buildtools.errors import KernloopError

__all__ = [
    "CONFIG_KEY",
    "PackageRequest",
    "PackagePlan",
    "AlignPlan",
    "parse_package_arg",
    "configured_packages",
    "plan_align",
    "find_uv",
    "align_commands",
    "run_commands",
]

# [tool.buildtools] key listing packages shipped as CUDA-major variants (read by buildtools.settings).
CONFIG_KEY = "cuda-variant-packages"

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PackageRequest:
    name: str  # normalised meta package name, e.g. "nixl"
    version: str | None = None  # --package nixl==0.7.1: pin to this instead of the installed meta version


def parse_package_arg(text: str) -> PackageRequest:
    name, sep, version = text.strip().partition("==")
    name = name.strip()
    if not _NAME.match(name) or re.search(r"-cu\d+$", _norm(name)):
        raise KernloopError(f"--package {text!r} is not a package name",
                            "give the meta package name, e.g. --package nixl (not nixl-cu12)")
    if sep:
        try:
            version = str(Version(version.strip()))
        except InvalidVersion:
            raise KernloopError(f"--package {text!r}: malformed version", "use NAME or NAME==VERSION") from None
    return PackageRequest(_norm(name), version or None)


def configured_packages(project: Path) -> list[str]:
    """``[tool.buildtools] cuda-variant-packages`` from ``project/pyproject.toml`` ([] when absent)."""
    return list(load_config(Path(project)).cuda_variant_packages)


@dataclass(frozen=True)
class PackagePlan:
    name: str
    message: str  # one line for the user: what was found and what happens
    uninstall: tuple[str, ...] = ()  # distribution names
    install: tuple[str, ...] = ()  # requirement strings, "nixl-cu13==0.7.1"
    problem: bool = False  # could not be aligned (exit status 1)


@dataclass(frozen=True)
class AlignPlan:
    torch_version: str
    packages: tuple[PackagePlan, ...]

    @property
    def uninstall(self) -> tuple[str, ...]:
        return tuple(d for p in self.packages for d in p.uninstall)

    @property
    def install(self) -> tuple[str, ...]:
        return tuple(r for p in self.packages for r in p.install)

    @property
    def ok(self) -> bool:
        return not any(p.problem for p in self.packages)


def _variants(name: str, distributions: Mapping[str, str]) -> dict[int, tuple[str, str]]:
    """CUDA major -> (distribution, version) of installed ``<name>-cuNN`` variants."""
    pattern = re.compile(rf"^{re.escape(name)}-cu(\d+)$")
    found = {}
    for dist, version in distributions.items():
        m = pattern.match(dist)
        if m:
            found[int(m.group(1))] = (dist, version)
    return dict(sorted(found.items()))


def _listing(variants: Mapping[int, tuple[str, str]]) -> str:
    return ", ".join(f"{d} {v}" for d, v in variants.values())


def plan_align(
    requests: Sequence[PackageRequest],
    distributions: Mapping[str, str],
    torch_version: str,
    torch_cuda: str | None,
    torch_hip: str | None,
    *,
    keep: bool = False,
) -> AlignPlan:
    """What to uninstall and install so each package's CUDA variant matches torch. Pure."""
    distributions = {_norm(k): v for k, v in distributions.items()}
    plans: list[PackagePlan] = []
    for req in requests:
        name = req.name
        meta = distributions.get(name)
        variants = _variants(name, distributions)
        if meta is None and not variants:
            plans.append(PackagePlan(name, f"{name}: not installed; nothing to align"))
            continue
        if torch_cuda is None:
            kind = f"a ROCm build (HIP {torch_hip})" if torch_hip else "a CPU build"
            if not variants:
                plans.append(PackagePlan(name, f"{name}: torch {torch_version} is {kind}; no CUDA variant installed"))
            elif keep:
                plans.append(PackagePlan(name, f"{name}: torch {torch_version} is {kind}; keeping "
                                         f"{_listing(variants)} (--keep), though it cannot load without CUDA"))
            else:
                plans.append(PackagePlan(
                    name,
                    f"{name}: torch {torch_version} is {kind}; removing the CUDA variants {_listing(variants)} "
                    "(--keep keeps them)",
                    uninstall=tuple(d for d, _ in variants.values()),
                ))
            continue

        major = int(torch_cuda.split(".")[0])
        wanted = f"{name}-cu{major}"
        pin = req.version or meta
        others = {m: dv for m, dv in variants.items() if m != major}
        remove = tuple(d for d, _ in others.values())
        have = variants.get(major)
        if pin is None:
            plans.append(PackagePlan(
                name,
                f"{name}: the meta package {name} is not installed, so there is no version to pin {wanted} to "
                f"(installed: {_listing(variants)}); pass --package {name}==VERSION",
                problem=True,
            ))
            continue
        origin = "--package" if req.version else f"the installed {name}"
        if have is not None and _same_version(have[1], pin) and not remove:
            plans.append(PackagePlan(name, f"{name}: {wanted} {have[1]} already matches torch {torch_version} "
                                     f"(CUDA {major}); nothing to do"))
            continue
        parts = [f"{name}: torch {torch_version} is CUDA {major}"]
        install: tuple[str, ...] = ()
        if have is None or not _same_version(have[1], pin):
            install = (f"{wanted}=={pin}",)
            was = f", replacing {have[1]}" if have is not None else ""
            parts.append(f"install {wanted}=={pin} ({origin}{was})")
        else:
            parts.append(f"keep {wanted} {have[1]}")
        if remove:
            parts.append(f"remove {_listing(others)}")
        plans.append(PackagePlan(name, "; ".join(parts), uninstall=remove, install=install))
    return AlignPlan(torch_version, tuple(plans))


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def find_uv(python: Path) -> str | None:
    """uv next to the target interpreter (a venv's bin), else on PATH."""
    beside = Path(python).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def align_commands(
    plan: AlignPlan, python: Path, *, uv: str | None = None, extra: Sequence[str] = ()
) -> list[list[str]]:
    """Uninstall first, then install: variants may ship the same files, and removing the old one
    after installing the new one would delete files the new one owns."""
    cmds: list[list[str]] = []
    if uv:
        if plan.uninstall:
            cmds.append([uv, "pip", "uninstall", "--python", str(python), *plan.uninstall])
        if plan.install:
            cmds.append([uv, "pip", "install", "--python", str(python), *extra, *plan.install])
    else:
        if plan.uninstall:
            cmds.append([str(python), "-m", "pip", "uninstall", "-y", *plan.uninstall])
        if plan.install:
            cmds.append([str(python), "-m", "pip", "install", *extra, *plan.install])
    return cmds


def run_commands(cmds: Sequence[Sequence[str]], plan: AlignPlan, echo: Callable[[str], None] = print) -> None:
    """Run each command, echoing it and its output; KernloopError on the first failure."""
    for i, cmd in enumerate(cmds):
        echo(f"$ {shlex.join(cmd)}")
        lines: list[str] = []

        def on_line(line: str) -> None:
            lines.append(line)
            echo(f"  {line}")

        # "finish": a package manager stopped half-way leaves a broken environment.
        code = proc.stream(cmd, on_line, on_interrupt="finish")
        if code != 0:
            detail = next((ln.strip() for ln in lines if ln.strip().startswith("ERROR")), None)
            detail = detail or next((ln.strip() for ln in reversed(lines) if ln.strip()), f"exit code {code}")
            removed = plan.uninstall if i > 0 else ()
            hint = "fix the cause and run wheels align again"
            if removed:
                hint = f"{', '.join(removed)} were already removed; {hint}"
            tool = "uv pip" if "--python" in cmd else "pip"
            verb = "uninstall" if "uninstall" in cmd else "install"
            raise KernloopError(f"{tool} {verb} failed: {detail}", hint)
