"""``torch bump``: move every torch/torchvision/torchaudio ``==`` pin to a new release, consistently.

Planner (pure: file texts in, file texts out) + writer. Only the version text of a pin changes:
comments, environment markers, extras, spacing, quoting and each pin's local tag (``+cpu``,
``+cu130``) stay as they were. Files: ``requirements/*.txt`` and ``pyproject.toml``.
"""
from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from packaging.version import InvalidVersion, Version

from buildtools.errors import KernloopError
from buildtools.util.fileio import atomic_write_text
from buildtools.torchenv.matrix import Matrix, Platform, derive_companions, parse_torch_version

__all__ = [
    "PACKAGES",
    "BumpTargets",
    "PinEdit",
    "FileEdit",
    "BumpPlan",
    "resolve_targets",
    "plan_bump",
    "collect_files",
    "write_plan",
]

PACKAGES = ("torch", "torchvision", "torchaudio")

# name [extras] specifiers [; marker] [# comment] -- one requirement as pip reads it from a line.
_REQ = re.compile(
    r"^(?P<lead>\s*)(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
    r"(?P<extras>\s*\[[^\]]*\])?(?P<spec>[^;#]*?)(?P<tail>\s*(?:;.*|#.*)?)$"
)
_PIN = re.compile(r"^(?P<before>\s*={2,3}\s*)(?P<version>[^\s,;#]+)(?P<after>\s*)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class BumpTargets:
    """The public versions every pin moves to (local tags are kept per pin)."""

    torch: str
    torchvision: str
    torchaudio: str
    torchaudio_given: bool = False
    problems: tuple[str, ...] = ()  # why this is an unknown combination (refused without --force)
    notes: tuple[str, ...] = ()

    def version_for(self, package: str) -> str:
        return {"torch": self.torch, "torchvision": self.torchvision, "torchaudio": self.torchaudio}[package]


@dataclass(frozen=True)
class PinEdit:
    file: str  # relative to the project
    line: int  # 1-based
    package: str
    old: str  # "2.14.1+cpu"
    new: str  # "2.15.0+cpu"


@dataclass(frozen=True)
class FileEdit:
    file: str
    old_text: str
    new_text: str
    edits: tuple[PinEdit, ...]

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.old_text.splitlines(keepends=True),
                self.new_text.splitlines(keepends=True),
                fromfile=f"a/{self.file}",
                tofile=f"b/{self.file}",
            )
        )


@dataclass(frozen=True)
class BumpPlan:
    targets: BumpTargets
    files: tuple[FileEdit, ...]  # only files that change
    pins_seen: int  # == pins found (changed or already at the target)
    problems: tuple[str, ...]  # unknown combinations: refused unless --force
    notices: tuple[str, ...] = field(default_factory=tuple)  # e.g. a range left alone

    @property
    def edits(self) -> tuple[PinEdit, ...]:
        return tuple(e for f in self.files for e in f.edits)


def _release_version(text: str, what: str) -> Version:
    try:
        v = Version(text.strip())
    except InvalidVersion:
        raise KernloopError(f"malformed {what} version {text!r}", f"use MAJOR.MINOR.PATCH, e.g. --{what} 0.30.0"
                            if what != "torch" else "use MAJOR.MINOR.PATCH, e.g. 2.15.0") from None
    if v.local:
        raise KernloopError(f"give the {what} version without a local tag: {text!r}",
                            f"use {v.public}; each pin keeps its own tag (+cpu, +cu130)")
    if len(v.release) != 3:
        raise KernloopError(f"malformed {what} version {text!r}", "use MAJOR.MINOR.PATCH, e.g. 2.15.0")
    return v


def resolve_targets(
    torch: str, torchvision: str | None, torchaudio: str | None, matrix: Matrix
) -> BumpTargets:
    """Versions for the three packages; torchvision/torchaudio from the matrix when not given.

    Raises KernloopError for malformed input; an unknown combination is reported in ``problems``.
    """
    tv = _release_version(torch, "torch")
    given_tv = _release_version(torchvision, "torchvision") if torchvision else None
    given_ta = _release_version(torchaudio, "torchaudio") if torchaudio else None
    problems: list[str] = []
    notes: list[str] = []
    companions = matrix.companions(tv)
    release = matrix.release(tv)
    if companions is None:
        known = matrix.known_versions()
        problems.append(f"torch {tv} is not in the compatibility matrix (known: {known[0]} ... {known[-1]})")
        companions = derive_companions(tv, matrix)
        if not (given_tv and given_ta):
            notes.append(f"torchvision {companions.torchvision} / torchaudio {companions.torchaudio} derived by "
                         "the release naming rule, not from published data")
    elif not companions.certain:
        notes.append(f"the matrix marks torch {tv}'s torchvision/torchaudio pairing as not confirmed")
    if given_tv and release is not None and str(tv) in release.patches and str(given_tv) != companions.torchvision:
        problems.append(f"torchvision {given_tv} does not go with torch {tv} (matrix: {companions.torchvision})")
    if given_ta and release is not None and str(tv) in release.patches and not release.torchaudio_fits(str(given_ta), str(tv)):
        problems.append(f"torchaudio {given_ta} does not go with torch {tv} (matrix: {companions.torchaudio})")
    return BumpTargets(
        torch=str(tv),
        torchvision=str(given_tv or companions.torchvision),
        torchaudio=str(given_ta or companions.torchaudio),
        torchaudio_given=given_ta is not None,
        problems=tuple(problems),
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class _Pin:
    line: int
    package: str
    start: int  # offset of the version text in the file
    end: int
    version: str  # as written, local tag included


def _scan_requirement(text: str, offset: int, line: int, where: str, notices: list[str]) -> Iterator[_Pin]:
    """The pin in one requirement string (a requirements.txt line or a TOML string), if it is ours."""
    m = _REQ.match(text)
    if not m or _norm(m.group("name")) not in PACKAGES:
        return
    package = _norm(m.group("name"))
    spec = m.group("spec")
    pin = _PIN.match(spec)
    if pin is None:
        if spec.strip():
            notices.append(f"{where}:{line}: {text.strip()} is not an == pin; left unchanged")
        return
    version = pin.group("version")
    if "*" in version:
        notices.append(f"{where}:{line}: {text.strip()} is a wildcard pin; left unchanged")
        return
    start = offset + m.start("spec") + pin.start("version")
    yield _Pin(line, package, start, start + len(version), version)


def _requirements_pins(text: str, where: str, problems: list[str], notices: list[str]) -> Iterator[_Pin]:
    hashed = "--hash" in text  # a pip-compile --generate-hashes lock: hashes may sit on continuation lines
    offset = 0
    for number, raw in enumerate(text.splitlines(keepends=True), start=1):
        body = raw.rstrip("\r\n")
        stripped = body.strip()
        if stripped and not stripped.startswith(("#", "-")):
            # The requirement is what precedes per-line options (" --hash=...") and a continuation "\".
            requirement = body.split(" --", 1)[0].rstrip().rstrip("\\").rstrip()
            pins = list(_scan_requirement(requirement, offset, number, where, notices))
            if pins and hashed:
                problems.append(f"{where}:{number}: hash-checked pin ({pins[0].package}); a new version needs "
                                "new hashes: regenerate this lock file instead")
            yield from pins
        offset += len(raw)


def _toml_strings(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the contents of every one-line TOML string outside comments."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith('"""', i) or text.startswith("'''", i):
            # Multi-line strings are not where requirement lists live; step over them.
            quote = text[i : i + 3]
            j = text.find(quote, i + 3)
            i = n if j < 0 else j + 3
        elif ch in "\"'":
            j = i + 1
            while j < n and text[j] != ch and text[j] != "\n":
                j += 2 if ch == '"' and text[j] == "\\" else 1
            yield i + 1, min(j, n)
            i = j + 1
        else:
            i += 1


def _pyproject_pins(text: str, where: str, notices: list[str]) -> Iterator[_Pin]:
    for start, end in _toml_strings(text):
        line = text.count("\n", 0, start) + 1
        yield from _scan_requirement(text[start:end], start, line, where, notices)


def _new_version(pin: _Pin, targets: BumpTargets) -> str:
    _, local = parse_torch_version(pin.version)
    base = targets.version_for(pin.package)
    return f"{base}+{local}" if local else base


def _tag_problem(pin: _Pin, where: str, targets: BumpTargets, matrix: Matrix) -> str | None:
    _, local = parse_torch_version(pin.version)
    release = matrix.release(targets.torch)
    if not local or release is None:  # an unknown release is already a problem of its own
        return None
    try:
        platform = Platform.parse(local)
    except KernloopError:
        return f"{where}:{pin.line}: {pin.package}=={pin.version}: local tag +{local} is not a PyTorch platform"
    if not release.has_platform(platform):
        return (f"{where}:{pin.line}: {pin.package}=={pin.version}: torch {release.minor} publishes no "
                f"{platform.tag} wheels ({', '.join(p.tag for p in release.platforms)})")
    return None


def plan_bump(files: Mapping[str, str], targets: BumpTargets, matrix: Matrix) -> BumpPlan:
    """Edit ``files`` (relative path -> text) so every pin names the target versions. Pure."""
    problems = list(targets.problems)
    notices: list[str] = []
    found: dict[str, list[_Pin]] = {}
    for rel, text in files.items():
        if rel.endswith(".toml"):
            found[rel] = list(_pyproject_pins(text, rel, notices))
        else:
            found[rel] = list(_requirements_pins(text, rel, problems, notices))

    # torchaudio from 2.11 on builds against torch's stable ABI: a pin that already fits the new
    # release is kept rather than moved (possibly down) to the matrix's number.
    if not targets.torchaudio_given:
        current = {parse_torch_version(p.version)[0] for pins in found.values() for p in pins
                   if p.package == "torchaudio"}
        release = matrix.release(targets.torch)
        if len(current) == 1 and release is not None and release.torchaudio_compatible:
            (have,) = current
            if release.torchaudio_fits(str(have), targets.torch) and have >= Version(targets.torchaudio):
                targets = BumpTargets(targets.torch, targets.torchvision, str(have), False,
                                      targets.problems, targets.notes)

    edits: list[FileEdit] = []
    pins_seen = 0
    for rel, pins in found.items():
        text = files[rel]
        pieces: list[str] = []
        last = 0
        changes: list[PinEdit] = []
        for pin in pins:
            pins_seen += 1
            problem = _tag_problem(pin, rel, targets, matrix)
            if problem:
                problems.append(problem)
            new = _new_version(pin, targets)
            if new != pin.version:
                pieces += [text[last : pin.start], new]
                last = pin.end
                changes.append(PinEdit(rel, pin.line, pin.package, pin.version, new))
        if changes:
            pieces.append(text[last:])
            new_text = "".join(pieces)
            if rel.endswith(".toml"):
                _check_toml(new_text, rel)
            edits.append(FileEdit(rel, text, new_text, tuple(changes)))
    return BumpPlan(targets, tuple(edits), pins_seen, tuple(problems), tuple(notices))


def _check_toml(text: str, rel: str) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # only a bug of ours can get here; never write such a file
        raise KernloopError(f"editing {rel} would make it invalid TOML ({exc}); nothing was written",
                            "edit the pins by hand and report this") from None


def collect_files(project: Path) -> dict[str, str]:
    """``requirements/*.txt`` and ``pyproject.toml`` of ``project``: relative path -> text (line endings kept)."""
    project = Path(project)
    paths = sorted((project / "requirements").glob("*.txt"))
    if (project / "pyproject.toml").is_file():
        paths.append(project / "pyproject.toml")
    if not paths:
        raise KernloopError(f"no requirements/*.txt or pyproject.toml in {project}",
                            "run from the project root or pass --project DIR")
    files: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                files[path.relative_to(project).as_posix()] = fh.read()
        except UnicodeDecodeError:
            raise KernloopError(f"{path} is not UTF-8 text", f"fix or move {path}") from None
        except OSError as exc:
            raise KernloopError(f"cannot read {path}: {exc.strerror or exc}") from None
    return files


def write_plan(plan: BumpPlan, project: Path) -> None:
    """Write every changed file atomically (each file is replaced whole, or not at all)."""
    for edit in plan.files:
        atomic_write_text(Path(project) / edit.file, edit.new_text)
