"""``[tool.buildtools]`` in pyproject.toml: the project's settings for the planner.

Every key is optional; the defaults below are this project's measured numbers. Keys are
kebab-case in TOML (``ram-per-cxx-job-gib``). Unknown keys are reported as warnings rather than
errors so that other buildtools commands can add their own settings to the same table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from buildtools.cache.dist import check_scheduler_url
from buildtools.errors import KernloopError

from buildtools.settings.overrides import BY_NAME, Overrides, _remote_url

__all__ = ["BuildConfig", "load_config", "config_from_table", "LAUNCHERS", "CONFIG_KEYS", "dist_request",
           "DEFAULT_CXX_JOB_GIB", "DEFAULT_CUDA_JOB_GIB", "DEFAULT_LINK_JOB_GIB", "DEFAULT_DIST_LOCAL_JOB_GIB",
           "DEFAULT_MAX_NVCC_THREADS", "DEFAULT_CUDA_ARCHS"]


LAUNCHERS = ("auto", "ccache", "sccache", "none")

# Peak RSS of one compile job, by TU kind (GiB), measured on this project's csrc/ with /usr/bin/time -v
# as CMAKE_<LANG>_COMPILER_LAUNCHER ("Maximum resident set size", nvcc's children included): cold,
# no ccache, -j1, Release, sm_90, g++ 12.2 -std=c++20, nvcc 13.0, torch 2.14.1+cu130 headers.
# - torch glue .cpp (light headers): torch_bindings.cpp 480 MB, ops.cpp/moe_ops.cpp 421 MB (CUDA
#   build; 305 MB CPU-only); the precompiled torch header (cmake_pch.hxx, KERNLOOP_PCH) 0.96 GiB, the
#   heaviest C++ job (measured by buildtools.cache.peaks). Default 1.25 GiB = that plus ~30 %.
#   Builds learn each kind's figure from their own TUs (buildtools.cache.peaks); these are the first build's.
# - torch-free .cu: 198 MB (one arch, --threads 1); 205 MiB with 4 archs --threads 1, 421 MiB with
#   --threads 4, i.e. ~0.2 GB per concurrent device compilation: the planner scales by NVCC_THREADS.
# - link of _C/_moe_C: 73 MB. Default 0.25 GiB leaves room for -g builds.
# - a .cu that includes ATen/cuda headers: 2.7 GB. This project keeps torch out of .cu files; a project
#   that does not should set ram-per-cuda-job-gib = 2.7.
DEFAULT_CXX_JOB_GIB = 1.25
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
    # A shared compiler cache URL (buildtools.cache.remote); its flag and environment variable win.
    remote_cache: str | None = None
    # A sccache-dist scheduler URL (buildtools.cache.dist); the flag and its variable win.
    dist_scheduler: str | None = None
    source: str = "built-in defaults"
    warnings: tuple[str, ...] = ()
    # The attributes the table set: a ram-per-*-job-gib set here beats the figure learned from builds.
    pinned: frozenset[str] = frozenset()


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
            values[attr] = _remote_url(value, f"{where} [tool.buildtools] {key}")
        elif attr == "dist_scheduler":
            if not isinstance(value, str):
                raise KernloopError(f"{where}: {key} must be a URL string, got {value!r}", f"fix {key} in {where}")
            checked = check_scheduler_url(value, f"{where} [tool.buildtools] {key}")
            values[attr] = None if checked == "off" else checked
    source = f"{where} [tool.buildtools]" if table else "built-in defaults"
    return BuildConfig(**values, source=source, warnings=tuple(warnings), pinned=frozenset(values))


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
    except UnicodeDecodeError:
        raise KernloopError(f"{path}: not UTF-8 text", f"fix {path}") from None
    except OSError as exc:
        raise KernloopError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_config(source_dir: Path) -> BuildConfig:
    """Read ``source_dir/pyproject.toml``'s ``[tool.buildtools]``; defaults when absent."""
    path = Path(source_dir) / "pyproject.toml"
    if not path.is_file():
        return BuildConfig()
    tool = _load_toml(path).get("tool", {})
    if not isinstance(tool, dict):
        raise KernloopError(f"{path}: [tool] must be a table", f"fix {path}")
    return config_from_table(tool.get("buildtools", {}), "pyproject.toml")


def dist_request(overrides: Overrides, config: BuildConfig) -> tuple[str, str] | None:
    """(scheduler URL, where it came from) when distributed compile is asked for: the flag or its
    variable over ``[tool.buildtools] dist-scheduler``; None when not asked for or ``off``."""
    o = overrides.dist_scheduler
    if o is not None:
        return None if o.value == "off" else (o.value, o.source)
    if config.dist_scheduler:
        return config.dist_scheduler, f"{config.source} {BY_NAME['dist_scheduler'].pyproject}"
    return None
