"""The torch <-> Python <-> CUDA <-> ROCm compatibility matrix (``torch_matrix.json``) as typed data.

The JSON file is the single source; its ``source`` block says where each column comes from and which
entries are not confirmed. This module only loads, validates and answers questions about it.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from buildtools.errors import KernloopError
from buildtools.versions import release_tuple

__all__ = [
    "MATRIX_PATH",
    "Platform",
    "PythonRange",
    "Companions",
    "TorchRelease",
    "Matrix",
    "load_matrix",
    "parse_torch_version",
    "minor_of",
    "derive_companions",
]

MATRIX_PATH = Path(__file__).with_name("torch_matrix.json")

_CU_TAG = re.compile(r"^cu(\d+)(\d)$")  # cu130 -> 13.0, cu118 -> 11.8 (the last digit is the minor)
_ROCM_TAG = re.compile(r"^rocm(\d+(?:\.\d+)+)$")


@dataclass(frozen=True)
class Platform:
    """A PyTorch wheel flavour: ``cuda 13.0`` (tag ``cu130``), ``rocm 6.4``, ``cpu`` or ``xpu``."""

    kind: str  # "cuda" | "rocm" | "cpu" | "xpu"
    version: str | None = None  # "13.0", "6.2.4"; None for cpu/xpu

    @property
    def tag(self) -> str:
        if self.kind == "cuda":
            assert self.version is not None
            major, minor = self.version.split(".")[:2]
            return f"cu{major}{minor}"
        if self.kind == "rocm":
            return f"rocm{self.version}"
        return self.kind

    @property
    def label(self) -> str:
        names = {"cuda": "CUDA", "rocm": "ROCm", "cpu": "CPU", "xpu": "XPU"}
        return f"{names[self.kind]} {self.version}" if self.version else names[self.kind]

    @property
    def sort_key(self) -> tuple[int, tuple[int, ...]]:
        order = {"cuda": 0, "rocm": 1, "xpu": 2, "cpu": 3}
        return (order[self.kind], release_tuple(self.version) if self.version else ())

    @classmethod
    def cuda(cls, version: str) -> "Platform":
        return cls("cuda", ".".join(version.split(".")[:2]))

    @classmethod
    def parse(cls, tag: str) -> "Platform":
        """``"cu130"`` / ``"rocm6.4"`` / ``"cpu"`` / ``"xpu"`` -> Platform; KernloopError otherwise."""
        text = tag.strip().lower()
        if text in ("cpu", "xpu"):
            return cls(text)
        m = _CU_TAG.match(text)
        if m:
            return cls("cuda", f"{int(m.group(1))}.{m.group(2)}")
        m = _ROCM_TAG.match(text)
        if m:
            return cls("rocm", m.group(1))
        raise KernloopError(
            f"unknown platform {tag!r}",
            "use cuXYZ (cu130, cu128, cu126), rocmX.Y (rocm6.4), cpu, xpu or auto",
        )

    def __str__(self) -> str:
        return self.tag


@dataclass(frozen=True)
class PythonRange:
    min: str  # "3.10"
    max: str  # "3.14"
    experimental: tuple[str, ...] = ()  # free-threaded builds, e.g. ("3.14t",)

    def supports(self, python_version: str) -> bool:
        mm = release_tuple(".".join(python_version.split(".")[:2]))
        return release_tuple(self.min) <= mm <= release_tuple(self.max)

    def __str__(self) -> str:
        return f"{self.min}-{self.max}"


@dataclass(frozen=True)
class Companions:
    """The torchvision / torchaudio that go with one torch patch release."""

    torchvision: str
    torchaudio: str
    certain: bool = True


@dataclass(frozen=True)
class TorchRelease:
    """One row of the matrix: a torch minor release (``"2.14"``) and its patch releases."""

    minor: str
    python: PythonRange
    cxx: str
    cuda_stable: tuple[str, ...]
    cuda_experimental: tuple[str, ...]
    rocm_stable: str | None
    rocm: tuple[str, ...]
    rocm_certain: bool
    xpu: bool
    pypi_cuda: str | None
    pypi_cuda_certain: bool
    patches: Mapping[str, Companions] = field(default_factory=dict)
    torchaudio_compatible: str | None = None  # a specifier: torchaudio built on torch's stable ABI

    @property
    def cuda(self) -> tuple[str, ...]:
        """Every CUDA version with a wheel index for this release, oldest first."""
        return tuple(sorted({*self.cuda_stable, *self.cuda_experimental}, key=release_tuple))

    @property
    def platforms(self) -> tuple[Platform, ...]:
        found = [Platform("cuda", c) for c in self.cuda]
        found += [Platform("rocm", r) for r in sorted(self.rocm, key=release_tuple)]
        if self.xpu:
            found.append(Platform("xpu"))
        found.append(Platform("cpu"))
        return tuple(found)

    def cuda_status(self, cuda: str) -> str | None:
        """``"stable"``, ``"experimental"`` or None for a CUDA ``major.minor`` this release does not ship."""
        mm = ".".join(cuda.split(".")[:2])
        if mm in self.cuda_stable:
            return "stable"
        if mm in self.cuda_experimental:
            return "experimental"
        return None

    def has_platform(self, platform: Platform) -> bool:
        return platform in self.platforms

    def torchaudio_fits(self, torchaudio: str, torch_patch: str | None = None) -> bool:
        """Whether a torchaudio goes with ``torch_patch`` (or any patch of this release): its recorded
        companion, or any version in the stable-ABI range. Older torchaudio is linked against one torch."""
        patches = [self.patches[torch_patch]] if torch_patch in self.patches else list(self.patches.values())
        if any(c.torchaudio == torchaudio for c in patches):
            return True
        if self.torchaudio_compatible:
            try:
                return Version(torchaudio) in SpecifierSet(self.torchaudio_compatible)
            except InvalidVersion:
                return False
        return False


def parse_torch_version(text: str) -> tuple[Version, str | None]:
    """``"2.14.1+cu130"`` -> (Version("2.14.1"), "cu130"); KernloopError for a malformed version."""
    try:
        v = Version(text.strip())
    except InvalidVersion:
        raise KernloopError(f"malformed version {text!r}", "use a PEP 440 version such as 2.14.1") from None
    return Version(v.public), v.local


def minor_of(version: Version | str) -> str:
    v = Version(str(version)) if not isinstance(version, Version) else version
    major, minor = (list(v.release) + [0])[:2]
    return f"{major}.{minor}"


@dataclass(frozen=True)
class Matrix:
    releases: tuple[TorchRelease, ...]  # oldest first
    cuda_min_driver: Mapping[str, str | None]
    source: Mapping[str, Any]
    path: Path

    @property
    def latest(self) -> TorchRelease:
        return self.releases[-1]

    @property
    def span(self) -> str:
        return f"{self.releases[0].minor}-{self.latest.minor}"

    def release(self, version: Version | str) -> TorchRelease | None:
        """The row for a torch version (``"2.14.1+cu130"``, ``"2.14"``), or None if the matrix lacks it."""
        public, _ = parse_torch_version(str(version))
        key = minor_of(public)
        return next((r for r in self.releases if r.minor == key), None)

    def companions(self, version: Version | str) -> Companions | None:
        public, _ = parse_torch_version(str(version))
        row = self.release(public)
        if row is None:
            return None
        return row.patches.get(str(public))

    def known_versions(self) -> tuple[str, ...]:
        return tuple(p for r in self.releases for p in sorted(r.patches, key=Version))

    def all_platforms(self) -> tuple[Platform, ...]:
        found = {p for r in self.releases for p in r.platforms}
        return tuple(sorted(found, key=lambda p: p.sort_key))

    def min_driver(self, cuda: str) -> str | None:
        return self.cuda_min_driver.get(".".join(cuda.split(".")[:2]))


def derive_companions(version: Version, matrix: Matrix) -> Companions:
    """torchvision/torchaudio for a torch release the matrix does not list (only used with --force).

    torchvision has been 0.(minor + 15).patch for every 2.x release; torchaudio matched torch's number
    up to 2.10 and, from 2.11 on, the newest known row's torchaudio (stable ABI) still applies.
    """
    major, minor, patch = (list(version.release) + [0, 0])[:3]
    torchvision = f"0.{minor + 15}.{patch}" if major == 2 else "unknown"
    latest = matrix.latest
    if latest.torchaudio_compatible and Version(str(version)) > Version(latest.minor + ".0"):
        newest = max(latest.patches, key=Version)
        torchaudio = latest.patches[newest].torchaudio
    else:
        torchaudio = str(version)
    return Companions(torchvision, torchaudio, certain=False)


def _fail(path: Path, what: str) -> KernloopError:
    return KernloopError(f"{path}: {what}", "fix the file (see docs/torch-alignment.md, 'Maintaining the matrix')")


def _parse(data: Any, path: Path) -> Matrix:
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("releases"), list):
        raise _fail(path, "not a schema-1 torch matrix (needs 'schema': 1 and a 'releases' list)")
    releases = []
    for raw in data["releases"]:
        try:
            cuda = raw["cuda"]
            rocm = raw.get("rocm") or {}
            pypi = raw.get("pypi_cuda") or {}
            patches = {
                v: Companions(c["torchvision"], c["torchaudio"], bool(c.get("certain", True)))
                for v, c in raw["patches"].items()
            }
            row = TorchRelease(
                minor=raw["torch"],
                python=PythonRange(
                    raw["python"]["min"], raw["python"]["max"], tuple(raw["python"].get("experimental", ()))
                ),
                cxx=raw.get("cxx", ""),
                cuda_stable=tuple(cuda["stable"]),
                cuda_experimental=tuple(cuda.get("experimental", ())),
                rocm_stable=rocm.get("stable"),
                rocm=tuple(rocm.get("published", ())),
                rocm_certain=bool(rocm.get("certain", True)),
                xpu=bool(raw.get("xpu", False)),
                pypi_cuda=pypi.get("version"),
                pypi_cuda_certain=bool(pypi.get("certain", True)),
                patches=patches,
                torchaudio_compatible=raw.get("torchaudio_compatible"),
            )
            # Every version string must be usable; catch typos at load time, not mid-command.
            release_tuple(row.minor)
            for v in (*row.cuda, *row.rocm, row.python.min, row.python.max):
                release_tuple(v)
            for p, c in patches.items():
                if minor_of(Version(p)) != row.minor:
                    raise ValueError(f"patch {p} listed under {row.minor}")
                Version(c.torchvision), Version(c.torchaudio)
            if row.torchaudio_compatible:
                SpecifierSet(row.torchaudio_compatible)
        except (KeyError, TypeError, ValueError, InvalidVersion, InvalidSpecifier) as exc:
            name = raw.get("torch", "?") if isinstance(raw, dict) else "?"
            raise _fail(path, f"release {name}: {exc.__class__.__name__}: {exc}") from None
        releases.append(row)
    releases.sort(key=lambda r: release_tuple(r.minor))
    if not releases:
        raise _fail(path, "no releases")
    return Matrix(
        releases=tuple(releases),
        cuda_min_driver=dict(data.get("cuda_min_driver", {})),
        source=dict(data.get("source", {})),
        path=path,
    )


def load_matrix(path: Path | None = None) -> Matrix:
    """Load and validate the matrix (the packaged file unless ``path`` is given)."""
    if path is None:
        return _load_default()
    return _load(Path(path))


def _load(path: Path) -> Matrix:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KernloopError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise _fail(path, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return _parse(data, path)


@functools.lru_cache(maxsize=1)
def _load_default() -> Matrix:
    return _load(MATRIX_PATH)
