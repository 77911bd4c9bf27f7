"""Settings: every override a user can force, and ``[tool.buildtools]`` in pyproject.toml.

:data:`OVERRIDES` is the one table of overrides: each row names its flag, its environment
variable, its ``[tool.buildtools]`` key where it has one, how its value is parsed and its help.
The argparse flags (:func:`add_flags`), :meth:`Overrides.from_sources`, the variables the build
fingerprint watches (:data:`OVERRIDE_ENV_VARS`) and the help texts are all made from it, and a
test checks the README's override table against it. Precedence is always flag > environment >
pyproject.toml > the plan.

``[tool.buildtools]``: every key is optional; the defaults below are this project's measured
numbers. Keys are kebab-case in TOML (``ram-per-cxx-job-gib``). Unknown keys are reported as
warnings rather than errors so that other buildtools commands can add their own settings to the
same table.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from buildtools.cache.dist import check_scheduler_url
from buildtools.cache.remote import check_url, parse_mode
from buildtools.errors import KernloopError
from buildtools.model import BUILD_TYPES, GIB, Override

__all__ = [
    "Setting",
    "OVERRIDES",
    "OVERRIDE_ENV_VARS",
    "BY_NAME",
    "Overrides",
    "add_flags",
    "flags_as_env",
    "overrides_help",
    "BuildConfig",
    "load_config",
    "config_from_table",
    "LAUNCHERS",
    "CONFIG_KEYS",
    "DIST_TOKEN_VARS",
    "dist_token",
    "dist_request",
]


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
    Setting("ram_budget", "ram_budget", "--ram-budget", "KERNLOOP_RAM_BUDGET", _ram_bytes, "RAM budget for the planner",
            "RAM the planner may use, e.g. 8G (default: the available RAM)", "SIZE", commands=()),
    Setting("remote_cache", "remote_cache", "--remote-cache", "KERNLOOP_REMOTE_CACHE", check_url,
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


def dist_request(overrides: Overrides, config: BuildConfig) -> tuple[str, str] | None:
    """(scheduler URL, where it came from) when distributed compile is asked for: the flag or its
    variable over ``[tool.buildtools] dist-scheduler``; None when not asked for or ``off``."""
    o = overrides.dist_scheduler
    if o is not None:
        return None if o.value == "off" else (o.value, o.source)
    if config.dist_scheduler:
        return config.dist_scheduler, f"{config.source} {BY_NAME['dist_scheduler'].pyproject}"
    return None


# --------------------------------------------------------------------------------------------
# [tool.buildtools]
# --------------------------------------------------------------------------------------------
LAUNCHERS = ("auto", "ccache", "sccache", "none")

# Peak RSS of one compile job, by TU kind (GiB), measured on this project's csrc/ with /usr/bin/time -v
# as CMAKE_<LANG>_COMPILER_LAUNCHER ("Maximum resident set size", nvcc's children included): cold,
# no ccache, -j1, Release, sm_90, g++ 12.2 -std=c++20, nvcc 13.0, torch 2.14.1+cu130 headers.
# - torch glue .cpp (light headers): torch_bindings.cpp 480 MB, ops.cpp/moe_ops.cpp 421 MB (CUDA
#   build; 305 MB CPU-only). Default 0.75 GiB = the heaviest plus ~50 % for compiler/flag drift.
# - torch-free .cu: 198 MB (one arch, --threads 1); 205 MiB with 4 archs --threads 1, 421 MiB with
#   --threads 4, i.e. ~0.2 GB per concurrent device compilation: the planner scales by NVCC_THREADS.
# - link of _C/_moe_C: 73 MB. Default 0.25 GiB leaves room for -g builds.
# - a .cu that includes ATen/cuda headers: 2.7 GB. This project keeps torch out of .cu files; a project
#   that does not should set ram-per-cuda-job-gib = 2.7.
DEFAULT_CXX_JOB_GIB = 0.75
DEFAULT_CUDA_JOB_GIB = 0.25
DEFAULT_LINK_JOB_GIB = 0.25
# What one distributed compile job keeps on this machine: the nvcc driver or g++ -E (preprocessing
# the TU with torch's headers), and fatbinary. Measured like the above (/usr/bin/time -v of the TU's
# command with -E): 40 MB (torch_bindings.cpp), 45 MB (ops.cpp, moe_ops.cpp), 51 MB (a .cu, nvcc -E);
# 0.1 GiB is twice the heaviest, for the sccache client's copy of the preprocessed source.
DEFAULT_DIST_LOCAL_JOB_GIB = 0.1
# nvcc --threads only helps across archs; beyond 4 the per-arch steps rarely outnumber the cores
# ninja would otherwise use for other TUs.
DEFAULT_MAX_NVCC_THREADS = 4
# Used when no GPU is visible and the user gave no arch list: one SASS per data-centre/consumer
# generation from Ampere on (a cubin for X.0 runs on every X.y with y >= 0: 8.0 covers A100, A10,
# RTX 30/40 (8.6/8.9); 9.0 H100/H200; 10.0 B200/GB200; 12.0 RTX 50 / RTX PRO), plus PTX on the
# highest so newer GPUs can JIT. Turing/Volta are left out: nvcc 13 dropped < 7.5 and 7.5 lacks bf16.
# Four archs instead of torch's eleven keeps a cold build ~3x shorter.
DEFAULT_CUDA_ARCHS = ("8.0", "9.0", "10.0", "12.0+PTX")

# TOML key -> (attribute, parser)
CONFIG_KEYS = {
    "ram-per-cxx-job-gib": "ram_per_cxx_job_gib",
    "ram-per-cuda-job-gib": "ram_per_cuda_job_gib",
    "ram-per-link-job-gib": "ram_per_link_job_gib",
    "max-nvcc-threads": "max_nvcc_threads",
    "default-cuda-archs": "default_cuda_archs",
    "launcher": "launcher",
    "cache-dir": "cache_dir",
    "cuda-variant-packages": "cuda_variant_packages",
    "remote-cache": "remote_cache",
    "dist-scheduler": "dist_scheduler",
}


@dataclass(frozen=True)
class BuildConfig:
    """Planner settings. ``source`` says where they came from (for --print-plan)."""

    ram_per_cxx_job_gib: float = DEFAULT_CXX_JOB_GIB
    ram_per_cuda_job_gib: float = DEFAULT_CUDA_JOB_GIB  # per nvcc thread
    ram_per_link_job_gib: float = DEFAULT_LINK_JOB_GIB
    max_nvcc_threads: int = DEFAULT_MAX_NVCC_THREADS
    default_cuda_archs: tuple[str, ...] = DEFAULT_CUDA_ARCHS
    launcher: str = "auto"  # auto | ccache | sccache | none
    cache_dir: Path | None = None  # CCACHE_DIR / SCCACHE_DIR; None: the launcher's own default
    # Packages shipped as CUDA-major variants (<pkg>-cu12, <pkg>-cu13), for `wheels align`.
    cuda_variant_packages: tuple[str, ...] = ()
    # A shared compiler cache URL (buildtools.cache.remote); the flag and KERNLOOP_REMOTE_CACHE win.
    remote_cache: str | None = None
    # A sccache-dist scheduler URL (buildtools.cache.dist); the flag and its variable win.
    dist_scheduler: str | None = None
    source: str = "built-in defaults"
    warnings: tuple[str, ...] = ()


def _positive_float(key: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise KernloopError(f"{where}: {key} must be a number > 0, got {value!r}", f"fix {key} in {where}")
    return float(value)


def _positive_int(key: str, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KernloopError(f"{where}: {key} must be an integer >= 1, got {value!r}", f"fix {key} in {where}")
    return value


def _arch_list(key: str, value: Any, where: str) -> tuple[str, ...]:
    # Accept "8.0;9.0+PTX", "8.0 9.0" or a TOML array; validated like --arch by the planner.
    if isinstance(value, str):
        items = value.replace(";", " ").split()
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        items = []
    if not items:
        raise KernloopError(f"{where}: {key} must be a non-empty arch list like \"8.0;9.0+PTX\", got {value!r}",
                            f"fix {key} in {where}")
    return tuple(items)


def config_from_table(table: Mapping[str, Any], where: str) -> BuildConfig:
    """Build a :class:`BuildConfig` from a ``[tool.buildtools]`` table (pure)."""
    if not isinstance(table, Mapping):
        raise KernloopError(f"{where}: [tool.buildtools] must be a table", f"fix {where}")
    values: dict[str, Any] = {}
    warnings = []
    for key, value in table.items():
        if key not in CONFIG_KEYS:
            warnings.append(f"{where}: unknown key [tool.buildtools] {key} ignored "
                            f"(known: {', '.join(CONFIG_KEYS)})")
            continue
        attr = CONFIG_KEYS[key]
        if attr.startswith("ram_per_"):
            values[attr] = _positive_float(key, value, where)
        elif attr == "max_nvcc_threads":
            values[attr] = _positive_int(key, value, where)
        elif attr == "default_cuda_archs":
            values[attr] = _arch_list(key, value, where)
        elif attr == "launcher":
            if value not in LAUNCHERS:
                raise KernloopError(f"{where}: launcher must be one of {', '.join(LAUNCHERS)}, got {value!r}",
                                    f"fix launcher in {where}")
            values[attr] = value
        elif attr == "cache_dir":
            if not isinstance(value, str) or not value.strip():
                raise KernloopError(f"{where}: cache-dir must be a path string, got {value!r}",
                                    f"fix cache-dir in {where}")
            values[attr] = Path(value).expanduser()
        elif attr == "cuda_variant_packages":
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise KernloopError(f"{where}: {key} must be a list of package names, got {value!r}",
                                    f'e.g. {key} = ["nixl"]')
            values[attr] = tuple(v.strip() for v in value)
        elif attr == "remote_cache":
            if not isinstance(value, str):
                raise KernloopError(f"{where}: {key} must be a URL string, got {value!r}", f"fix {key} in {where}")
            values[attr] = check_url(value, f"{where} [tool.buildtools] {key}")
        elif attr == "dist_scheduler":
            if not isinstance(value, str):
                raise KernloopError(f"{where}: {key} must be a URL string, got {value!r}", f"fix {key} in {where}")
            checked = check_scheduler_url(value, f"{where} [tool.buildtools] {key}")
            values[attr] = None if checked == "off" else checked
    source = f"{where} [tool.buildtools]" if table else "built-in defaults"
    return BuildConfig(**values, source=source, warnings=tuple(warnings))


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        try:
            import tomli as tomllib
        except ImportError:
            raise KernloopError("reading pyproject.toml on Python 3.10 needs tomli", "pip install tomli") from None
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise KernloopError(f"{path}: invalid TOML ({exc})", f"fix {path}") from None
    except OSError as exc:
        raise KernloopError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_config(source_dir: Path) -> BuildConfig:
    """Read ``source_dir/pyproject.toml``'s ``[tool.buildtools]``; defaults when absent."""
    path = Path(source_dir) / "pyproject.toml"
    if not path.is_file():
        return BuildConfig()
    table = _load_toml(path).get("tool", {}).get("buildtools", {})
    return config_from_table(table, "pyproject.toml")
