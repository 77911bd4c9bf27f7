"""Overrides: :data:`OVERRIDES`, the one table of what a user can force (flag > environment
variable > [tool.buildtools] > the plan), and the :class:`Overrides` made from it."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from buildtools.cache.dist import check_scheduler_url
from buildtools.cache.remote import check_url, parse_mode
from buildtools.errors import KernloopError
from buildtools.model import BUILD_TYPES, GIB, Override
from buildtools.util.secrets import has_password, redact

__all__ = ["Setting", "OVERRIDES", "OVERRIDE_ENV_VARS", "BY_NAME", "Overrides", "add_flags", "flags_as_env",
           "overrides_help", "DIST_TOKEN_VARS", "dist_token"]


# --------------------------------------------------------------------------------------------
# Overrides: flag > environment variable
# --------------------------------------------------------------------------------------------


def _setting(source: str, text: object) -> str:
    """``--jobs 0`` for a flag, ``NAME=0`` for an environment variable."""
    return f"{source} {text}" if source.startswith("-") else f"{source}={text}"


def _fix(source: str, what: str) -> str:
    return f"pass {what} to {source}" if source.startswith("-") else f"set {source} to {what}, or unset it"


def _int_at_least_1(text: object, source: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise KernloopError(f"{_setting(source, text)}: not a whole number >= 1", _fix(source, "a whole number >= 1"))
    return value


_UNITS = {"": GIB, "g": GIB, "gb": GIB, "gib": GIB, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}


def _ram_bytes(text: object, source: str) -> int:
    """``"1.5G"``, ``"1536M"``, ``"2"`` (GiB) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", str(text).lower())
    value = float(m.group(1)) * _UNITS[m.group(2)] if m and m.group(2) in _UNITS else 0
    if value < 1024**2:
        raise KernloopError(f"{_setting(source, text)}: not a RAM size", _fix(source, "a size like 1.5G or 1536M"))
    return int(value)


def _build_type(text: object, source: str) -> str:
    for name in BUILD_TYPES:
        if name.lower() == str(text).strip().lower():
            return name
    raise KernloopError(f"{_setting(source, text)}: not a CMake build type",
                        _fix(source, f"one of {', '.join(BUILD_TYPES)}"))


_URL_ENV = "KERNLOOP_REMOTE_CACHE"


def _remote_url(text: object, source: str) -> str:
    """A checked shared-cache URL; one with a password only from its environment variable: a flag
    shows in every process list and the lock, a file is read by anyone with the checkout."""
    url = check_url(text, source)
    if has_password(url) and source != _URL_ENV:
        raise KernloopError(f"{source}: a shared cache URL with a password is accepted only from {_URL_ENV}",
                            f"export {_URL_ENV}='{redact(url)}' (with the real password) instead")
    return url


def _on_off(text: object, source: str) -> str:
    value = str(text).strip().upper()
    if value in ("ON", "1", "TRUE", "YES"):
        return "ON"
    if value in ("OFF", "0", "FALSE", "NO"):
        return "OFF"
    raise KernloopError(f"{_setting(source, text)}: not ON or OFF", _fix(source, "ON or OFF"))


def _arch_text(text: object, source: str) -> str:
    # Only emptiness here: the platform parses the list in its compiler's spelling.
    if not str(text).strip():
        raise KernloopError(f"{source} is empty", f"give at least one arch in {source}, e.g. \"9.0\"")
    return str(text).strip()


@dataclass(frozen=True)
class Setting:
    """One override: where it may come from, how it is parsed, how it is explained."""

    name: str  # the Overrides field
    keyword: str  # Overrides.from_sources keyword and argparse dest
    flag: str  # "--jobs"
    env: str  # "MAX_JOBS"
    parse: Callable[[object, str], Any]  # (text, "--jobs" or "MAX_JOBS") -> value; KernloopError if bad
    what: str  # short, for tables: "compile jobs"
    help: str  # the flag's help, without the "env X" part added by add_flags
    metavar: str = "VALUE"
    pyproject: str | None = None  # the [tool.buildtools] key below the environment, if any
    commands: tuple[str, ...] = ("presets",)  # the commands that carry the flag


OVERRIDES: tuple[Setting, ...] = (
    Setting("jobs", "jobs", "--jobs", "MAX_JOBS", _int_at_least_1, "compile jobs",
            "compile jobs (default: planned from cores and RAM)", "N"),
    Setting("device_threads", "nvcc_threads", "--nvcc-threads", "NVCC_THREADS", _int_at_least_1, "nvcc --threads",
            "nvcc --threads per compile job (default: planned)", "N"),
    Setting("archs", "arch", "--arch", "TORCH_CUDA_ARCH_LIST", _arch_text, "CUDA archs",
            'CUDA archs, e.g. "8.0;9.0+PTX" (default: local GPUs, else a default list)', "LIST"),
    Setting("build_type", "build_type", "--build-type", "CMAKE_BUILD_TYPE", _build_type, "build type",
            f"{', '.join(BUILD_TYPES)} (default: Release)", "T"),
    Setting("enable_cuda", "enable_cuda", "--enable-cuda", "KERNLOOP_ENABLE_CUDA", _on_off, "CUDA kernels",
            "ON: build the CUDA kernels or fail; OFF: a CPU-only build even with nvcc (default: CUDA when "
            "nvcc and a CUDA torch are there, and never silently dropped once built)", "ON|OFF", commands=()),
    Setting("ram_budget", "ram_budget", "--ram-budget", "KERNLOOP_RAM_BUDGET", _ram_bytes, "RAM budget for the planner",
            "RAM the planner may use, e.g. 8G (default: the available RAM)", "SIZE", commands=()),
    Setting("remote_cache", "remote_cache", "--remote-cache", _URL_ENV, _remote_url,
            "shared compiler cache", "shared compiler cache behind the local one: redis://HOST[:PORT], "
            "http://HOST/PATH, file:///DIR, s3://BUCKET[/PREFIX], or off; see docs/shared-cache.md", "URL",
            pyproject="remote-cache", commands=("presets", "build")),
    Setting("remote_cache_mode", "remote_cache_mode", "--remote-cache-mode", "KERNLOOP_REMOTE_CACHE_MODE", parse_mode,
            "shared cache mode", "read-only (default) or read-write", "MODE", commands=("presets", "build")),
    Setting("dist_scheduler", "distributed", "--distributed", "KERNLOOP_DIST_SCHEDULER", check_scheduler_url,
            "distributed compile", "compile on a sccache-dist cluster: its scheduler http://HOST:PORT, or off; "
            "token from KERNLOOP_DIST_TOKEN or KERNLOOP_DIST_TOKEN_FILE; see docs/distributed.md", "URL",
            pyproject="dist-scheduler", commands=("presets", "build")),
)
BY_NAME = {s.name: s for s in OVERRIDES}
# What the planner reads from the environment: a change must regenerate the presets.
OVERRIDE_ENV_VARS = tuple(s.env for s in OVERRIDES)


@dataclass(frozen=True)
class Overrides:
    """What the user forced, each with its source. Build with :meth:`from_sources`."""

    jobs: Override[int] | None = None
    device_threads: Override[int] | None = None  # nvcc --threads for CUDA
    archs: Override[str] | None = None  # raw list, parsed by the platform ("8.0;9.0+PTX")
    build_type: Override[str] | None = None
    enable_cuda: Override[str] | None = None  # "ON" / "OFF"
    ram_budget: Override[int] | None = None  # bytes; replaces the detected available RAM
    remote_cache: Override[str] | None = None  # a checked URL or "off"; beats [tool.buildtools] remote-cache
    remote_cache_mode: Override[str] | None = None  # "read-write" / "read-only"
    dist_scheduler: Override[str] | None = None  # a checked scheduler URL or "off"; beats dist-scheduler

    @classmethod
    def from_sources(cls, *, env: Mapping[str, str] | None = None, **flags: Any) -> Overrides:
        """Flags (keyword per :data:`OVERRIDES` row; ``None``: not given) over their environment
        variables (empty means unset). Raises KernloopError on a malformed value, naming the flag
        or variable."""
        env = env or {}
        unknown = set(flags) - {s.keyword for s in OVERRIDES}
        if unknown:
            raise TypeError(f"unknown override keyword(s): {', '.join(sorted(unknown))}")
        out: dict[str, Override[Any]] = {}
        for s in OVERRIDES:
            if flags.get(s.keyword) is not None:
                text, source = flags[s.keyword], s.flag
            elif str(env.get(s.env, "")).strip():
                text, source = env[s.env], s.env
            else:
                continue
            out[s.name] = Override(s.parse(text, source), source)
        return cls(**out)


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The override flags ``command`` carries, with their help (values are checked by
    :meth:`Overrides.from_sources`, one line naming the flag, not by argparse)."""
    for s in OVERRIDES:
        if command in s.commands:
            extra = f"; [tool.buildtools] {s.pyproject}" if s.pyproject else ""
            parser.add_argument(s.flag, dest=s.keyword, metavar=s.metavar, help=f"{s.help} (env {s.env}{extra})")


def flags_as_env(args: argparse.Namespace, command: str) -> dict[str, str]:
    """The override flags given to ``command``, checked (one error naming the flag, before anything
    runs) and spelled as their environment variables, which is how ``build`` hands them to the
    planner like every other override."""
    given = {s.keyword: getattr(args, s.keyword, None) for s in OVERRIDES if command in s.commands}
    forced = Overrides.from_sources(**given)
    return {s.env: str(getattr(forced, s.name).value) for s in OVERRIDES if getattr(forced, s.name, None) is not None}


def overrides_help(command: str) -> str:
    """One sentence for a command's description: the overrides it reads from the environment only."""
    env_only = [s.env for s in OVERRIDES if command not in s.commands]
    return f"Planner overrides come from {', '.join(env_only)}." if env_only else ""


# The distributed-compile token: the value, or a file holding it. Never an override row: it must
# not reach the build fingerprint, the presets, --json or --print-plan.
DIST_TOKEN_VARS = ("KERNLOOP_DIST_TOKEN", "KERNLOOP_DIST_TOKEN_FILE")


def dist_token(env: Mapping[str, str]) -> tuple[str, str]:
    """(token, where it came from) for distributed compile; KernloopError when neither variable is
    set or the file cannot be read -- before anything is compiled."""
    from buildtools.cache.dist_runtime import read_token

    return read_token(env, *DIST_TOKEN_VARS)


