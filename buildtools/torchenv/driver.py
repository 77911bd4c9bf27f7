"""What GPU driver stack this machine has: the NVIDIA driver (and the CUDA version it supports) or ROCm.

NVIDIA: NVML first (``nvidia-ml-py``: ``nvmlSystemGetCudaDriverVersion``), then the ``nvidia-smi`` banner.
ROCm: ``$ROCM_PATH``/``/opt/rocm`` version files, versioned ``/opt/rocm-X.Y.Z`` dirs, ``rocminfo``, ``/dev/kfd``.
No driver is a normal answer (None), never an error: CPU machines and build containers have none.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from buildtools.util import proc
from buildtools.versions import release_tuple

__all__ = [
    "DriverFacts",
    "RocmFacts",
    "detect_nvidia_driver",
    "detect_rocm",
    "cuda_from_nvml_int",
    "parse_nvidia_smi",
    "max_cuda_for_driver",
]


@dataclass(frozen=True)
class DriverFacts:
    """The NVIDIA driver: its version and the newest CUDA it supports (``"13.0"``)."""

    version: str | None  # "580.65.06"
    cuda: str | None  # "13.0"
    source: str


@dataclass(frozen=True)
class RocmFacts:
    version: str | None  # "6.4.1", or None when only the kernel driver / tools were seen
    source: str


def cuda_from_nvml_int(value: int) -> str:
    """NVML encodes CUDA 12.4 as 12040."""
    return f"{value // 1000}.{(value % 1000) // 10}"


_SMI_DRIVER = re.compile(r"Driver Version:\s*([0-9][0-9.]*)")
_SMI_CUDA = re.compile(r"CUDA Version:\s*([0-9]+\.[0-9]+)")


def parse_nvidia_smi(text: str) -> tuple[str | None, str | None]:
    """(driver version, CUDA version) from the banner of plain ``nvidia-smi``."""
    drv = _SMI_DRIVER.search(text)
    cuda = _SMI_CUDA.search(text)
    return (drv.group(1) if drv else None, cuda.group(1) if cuda else None)


def max_cuda_for_driver(driver_version: str, min_driver: Mapping[str, str | None]) -> str | None:
    """The newest CUDA whose minimum driver (matrix ``cuda_min_driver``) this driver meets."""
    try:
        have = release_tuple(driver_version)
    except ValueError:
        return None
    fits = [c for c, need in min_driver.items() if need and release_tuple(need) <= have]
    return max(fits, key=release_tuple) if fits else None


def _from_nvml() -> DriverFacts | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...: no usable driver here
        return None
    try:
        getter = getattr(pynvml, "nvmlSystemGetCudaDriverVersion_v2", None) or pynvml.nvmlSystemGetCudaDriverVersion
        cuda = cuda_from_nvml_int(int(getter()))
        version = pynvml.nvmlSystemGetDriverVersion()
        if isinstance(version, bytes):  # older nvidia-ml-py returned bytes
            version = version.decode()
        return DriverFacts(str(version), cuda, "NVML (nvmlSystemGetCudaDriverVersion)")
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _from_smi(smi: str) -> DriverFacts | None:
    exe = shutil.which(smi) if os.sep not in smi else smi
    if not exe:
        return None
    res = proc.try_run([exe], timeout=30)
    if res is None or not res.ok:
        return None
    version, cuda = parse_nvidia_smi(res.stdout)
    if version is None and cuda is None:
        return None
    return DriverFacts(version, cuda, f"{exe} banner")


def detect_nvidia_driver(*, nvml: bool = True, smi: str = "nvidia-smi") -> DriverFacts | None:
    """The NVIDIA driver, or None when there is none (no NVML library, no working nvidia-smi)."""
    found = _from_nvml() if nvml else None
    return found or _from_smi(smi)


_ROCM_VERSION = re.compile(r"^(\d+\.\d+(?:\.\d+)?)")


def _rocm_version_file(root: Path) -> str | None:
    for name in (".info/version", ".info/version-dev"):
        try:
            text = (root / name).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        m = _ROCM_VERSION.match(text)
        if m:
            return m.group(1)
    return None


def detect_rocm(
    *,
    env: Mapping[str, str] | None = None,
    roots: Iterable[Path] | None = None,
    kfd: Path = Path("/dev/kfd"),
) -> RocmFacts | None:
    """ROCm on this machine, or None. ``roots``/``kfd`` exist so tests can point at fixture trees."""
    env = os.environ if env is None else env
    if roots is None:
        candidates = [Path(env[k]) for k in ("ROCM_PATH", "ROCM_HOME", "HIP_PATH") if env.get(k)]
        candidates.append(Path("/opt/rocm"))
        candidates += sorted(Path("/opt").glob("rocm-*"), reverse=True)
    else:
        candidates = list(roots)
    for root in candidates:
        version = _rocm_version_file(root)
        if version:
            return RocmFacts(version, f"{root}/.info/version")
        m = re.match(r"^rocm-(\d+\.\d+(?:\.\d+)?)$", root.name)
        if m and root.is_dir():
            return RocmFacts(m.group(1), f"directory {root}")
    tool = shutil.which("rocminfo", path=env.get("PATH"))
    if tool:
        return RocmFacts(None, f"{tool} (version unknown)")
    if kfd.exists():
        return RocmFacts(None, f"{kfd} (amdgpu kernel driver; ROCm version unknown)")
    return None
