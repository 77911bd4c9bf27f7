"""Find nvcc and the real CUDA toolkit behind it.

Search order: ``--nvcc``, ``CUDACXX``, ``CMAKE_CUDA_COMPILER``, ``$CUDA_HOME/bin/nvcc``,
``$CUDA_PATH/bin/nvcc``, PATH, ``/usr/local/cuda/bin/nvcc``; the first one that is
set (or present) wins.

What is found may be a symlink or a wrapper script (``exec /usr/local/cuda-13.0/bin/nvcc
"$@"``). CMake's FindCUDA derives the toolkit root from the compiler's location and
fails on a wrapper, so we ask nvcc itself: ``nvcc -dryrun`` prints ``#$ TOP=<root>/bin/..``
and ``#$ _HERE_=<root>/bin``, which are the real toolkit, whatever the wrapper did.

A location the user chose (the flag or an environment variable) that does not work is
an error naming that setting; a location we merely guessed is skipped with a note.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from buildtools.errors import KernloopError
from buildtools.model import NvccFacts
from buildtools.detect._common import first_line, is_executable_file, probe

__all__ = [
    "NvccCandidate",
    "DEFAULT_NVCC",
    "nvcc_candidates",
    "parse_dryrun",
    "parse_nvcc_version",
    "parse_gpu_arch_list",
    "probe_nvcc",
    "find_nvcc",
]

DEFAULT_NVCC = Path("/usr/local/cuda/bin/nvcc")
_NVCC_HINT = "pass --nvcc PATH to a working nvcc"


@dataclass(frozen=True)
class NvccCandidate:
    path: Path
    origin: str  # "--nvcc", "CUDACXX", "CUDA_HOME", "PATH", ...
    explicit: bool  # chosen by the user: failing to use it is an error, not a skip
    setting: str = ""  # what to fix when it is broken, e.g. "CUDA_HOME=/opt/cuda"


class _Unusable(Exception):
    """A candidate that exists but cannot be used; the message says why."""


def _env_compiler(value: str, env: Mapping[str, str]) -> Path:
    # CMake accepts a bare program name in CUDACXX and looks it up on PATH.
    if os.sep not in value and "/" not in value:
        hit = shutil.which(value, path=env.get("PATH", ""))
        return Path(hit) if hit else Path(value)
    return Path(value)


def nvcc_candidates(
    explicit: Path | None, env: Mapping[str, str], fallbacks: Sequence[Path] = (DEFAULT_NVCC,)
) -> Iterator[NvccCandidate]:
    """The candidates in search order, validating the user's own settings on the way.

    Raises KernloopError when a setting the user made (``--nvcc``, ``CUDACXX``,
    ``CMAKE_CUDA_COMPILER``, ``CUDA_HOME``, ``CUDA_PATH``) names no nvcc: silently using
    another toolkit than the one asked for would build against the wrong CUDA. Lazy, so
    a setting after the one that works is never judged.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise KernloopError(f"--nvcc {path}: no such file", _NVCC_HINT + ", e.g. --nvcc /usr/local/cuda/bin/nvcc")
        if path.is_dir():
            raise KernloopError(
                f"--nvcc {path} is a directory, not the nvcc program",
                f"pass the compiler itself, e.g. --nvcc {path / 'bin' / 'nvcc'}",
            )
        yield NvccCandidate(path, "--nvcc", True, f"--nvcc {path}")
        return
    for var in ("CUDACXX", "CMAKE_CUDA_COMPILER"):
        value = env.get(var, "").strip()
        if value:
            path = _env_compiler(value, env)
            if not path.is_file():
                raise KernloopError(
                    f"{var}={value} names no nvcc (no such file)",
                    f"fix or unset {var}, or {_NVCC_HINT}",
                )
            yield NvccCandidate(path, var, True, f"{var}={value}")
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = env.get(var, "").strip()
        if value:
            path = Path(value).expanduser() / "bin" / "nvcc"
            if not path.is_file():
                where = "does not exist" if not Path(value).exists() else "has no bin/nvcc"
                raise KernloopError(
                    f"{var}={value} {where}",
                    f"point {var} at a CUDA toolkit root, unset it, or {_NVCC_HINT}",
                )
            yield NvccCandidate(path, var, True, f"{var}={value}")
    on_path = shutil.which("nvcc", path=env.get("PATH", ""))
    if on_path:
        yield NvccCandidate(Path(on_path), "PATH", False)
    for path in fallbacks:
        if is_executable_file(path) and (not on_path or os.path.abspath(on_path) != os.path.abspath(path)):
            yield NvccCandidate(path, "default location", False)


def parse_dryrun(text: str) -> tuple[str | None, str | None]:
    """``(TOP, _HERE_)`` from ``nvcc -dryrun`` output (its ``#$ NAME=value`` lines)."""
    top = here = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("#$"):
            continue
        body = line[2:].strip()
        name, sep, value = body.partition("=")
        if not sep:
            continue
        # Values are printed unquoted; a path with spaces is the rest of the line.
        value = value.strip().strip('"')
        if name == "TOP" and top is None:
            top = value
        elif name == "_HERE_" and here is None:
            here = value
    return top, here


_RELEASE_RE = re.compile(r"release\s+(\d+\.\d+)")
_V_RE = re.compile(r"\bV(\d+\.\d+)")


def parse_nvcc_version(text: str) -> str | None:
    """``"13.0"`` from ``nvcc --version`` (``Cuda compilation tools, release 13.0, V13.0.88``)."""
    match = _RELEASE_RE.search(text) or _V_RE.search(text)
    return match.group(1) if match else None


_ARCH_RE = re.compile(r"\bcompute_(\d+)([a-z]?)\b")


def parse_gpu_arch_list(text: str) -> tuple[str, ...]:
    """``compute_90``/``compute_90a``/``compute_121`` -> ``"9.0"``/``"9.0a"``/``"12.1"``, sorted."""
    seen: dict[tuple[int, int, str], str] = {}
    for match in _ARCH_RE.finditer(text):
        number, suffix = int(match.group(1)), match.group(2)
        major, minor = divmod(number, 10)
        seen[(major, minor, suffix)] = f"{major}.{minor}{suffix}"
    return tuple(seen[k] for k in sorted(seen))


def _is_link(path: Path) -> bool:
    return os.path.realpath(path) != os.path.abspath(path)


def _dryrun(nvcc: Path, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    dry = probe([nvcc, "-dryrun", "-x", "cu", os.devnull, "-c", "-o", os.devnull], env)
    if dry is None:
        raise _Unusable(f"cannot run {nvcc}")
    top, here = parse_dryrun(dry.stderr + "\n" + dry.stdout)
    if top is None and not dry.ok:
        detail = first_line(dry.stderr or dry.stdout) or f"exit code {dry.returncode}"
        raise _Unusable(f"{nvcc} -dryrun failed: {detail}")
    return top, here


def probe_nvcc(candidate: NvccCandidate, env: Mapping[str, str]) -> tuple[NvccFacts, list[str]]:
    """Resolve one candidate to the real toolkit; raises _Unusable when it does not work."""
    notes: list[str] = []
    found = Path(os.path.abspath(candidate.path))
    top, here = _dryrun(found, env)
    if top is None and os.path.realpath(found) != str(found):
        # nvcc reads TOP from the nvcc.profile next to the path it was called by, so a
        # symlink to nvcc prints none: ask the file the link points to.
        top, here = _dryrun(Path(os.path.realpath(found)), env)

    if top is not None:
        # realpath, not normpath: "<bin>/.." must be taken after bin's symlinks are followed.
        root = Path(os.path.realpath(top))
        bindir = Path(os.path.realpath(here)) if here else root / "bin"
        real = bindir / "nvcc"
        if not real.is_file():
            real = root / "bin" / "nvcc"
        if not real.is_file():
            notes.append(f"nvcc -dryrun of {found} named TOP={top} but it has no bin/nvcc; using {found} itself")
            real = Path(os.path.realpath(found))
        how = "resolved by nvcc -dryrun"
    else:
        real = Path(os.path.realpath(found))
        root = real.parent.parent
        notes.append(f"{found} -dryrun printed no TOP= line; toolkit root taken from the nvcc path: {root}")
        how = "root from the nvcc path"

    ver = probe([real, "--version"], env)
    version = parse_nvcc_version(ver.stdout + ver.stderr) if ver is not None else None
    if version is None:
        detail = first_line(ver.stderr or ver.stdout) if ver is not None else "cannot run it"
        raise _Unusable(f"{real} --version printed no CUDA release ({detail or 'no output'})")

    arch_run = probe([real, "--list-gpu-arch"], env)
    archs = parse_gpu_arch_list(arch_run.stdout) if arch_run is not None and arch_run.ok else ()
    if not archs:
        notes.append(f"{real} --list-gpu-arch listed no archs (nvcc {version}); arch list not checked against nvcc")

    if found == real:
        kind = ""
    elif Path(os.path.realpath(found)) == real:
        kind = "symlink "
    elif _is_link(found):
        kind = "symlink to wrapper "
    else:
        kind = "wrapper "
    source = f"{real} (from: {candidate.origin} {kind}{found}, {how})"
    return NvccFacts(path=real, found_as=found, root=root, version=version, archs=archs, source=source), notes


def find_nvcc(
    explicit: Path | None, env: Mapping[str, str], fallbacks: Sequence[Path] = (DEFAULT_NVCC,)
) -> tuple[NvccFacts | None, list[str]]:
    """The first working nvcc in search order, or None with a note saying what was searched."""
    notes: list[str] = []
    for candidate in nvcc_candidates(explicit, env, fallbacks):
        try:
            facts, more = probe_nvcc(candidate, env)
        except _Unusable as exc:
            if candidate.explicit:
                raise KernloopError(f"{candidate.setting}: {exc}", f"fix it or {_NVCC_HINT}") from None
            notes.append(f"skipped nvcc on {candidate.origin}: {exc}")
            continue
        notes.extend(more)
        cuda_home = env.get("CUDA_HOME", "").strip()
        if cuda_home and candidate.origin != "CUDA_HOME" and Path(os.path.realpath(cuda_home)) != facts.root:
            notes.append(
                f"CUDA_HOME={cuda_home} is not the toolkit of the chosen nvcc; the build uses {facts.root}"
            )
        return facts, notes
    notes.append(
        "nvcc not found (searched --nvcc, CUDACXX, CMAKE_CUDA_COMPILER, CUDA_HOME, CUDA_PATH, "
        f"PATH, {', '.join(map(str, fallbacks)) or 'no default location'}): install the CUDA toolkit or pass --nvcc PATH; "
        "without it only a CPU build is possible"
    )
    return None, notes
