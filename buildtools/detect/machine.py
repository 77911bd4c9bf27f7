"""The machine: usable cores, available RAM, local GPU archs.

Inside a container ``os.cpu_count()`` and ``/proc/meminfo`` describe the host; the
limits that OOM-kill a build live in the cgroup. Both cgroup versions are read, at
every level from our cgroup up to the mount (a parent's limit binds its children),
and the tightest wins. The readers take the cgroup mount and the ``/proc/self/cgroup``
file as arguments so tests can hand them a fake tree.
"""
from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from buildtools.model import CpuFacts, GpuFacts, MemoryFacts
from buildtools.detect._common import first_line, probe

__all__ = [
    "CGROUP_ROOT",
    "PROC_SELF_CGROUP",
    "CgroupLimit",
    "cgroup_membership",
    "cgroup_cpu_limit",
    "cgroup_memory_available",
    "host_available_memory",
    "detect_cpus",
    "detect_memory",
    "parse_nvidia_smi",
    "gpus_from_nvml",
    "detect_gpus",
    "gib",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

# cgroup v1 writes "no limit" as a huge page-rounded number (9223372036854771712).
_V1_UNLIMITED = 1 << 60


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


@dataclass(frozen=True)
class CgroupLimit:
    value: float  # CPUs for cpu limits, bytes for memory
    what: str  # e.g. "cgroup v2 cpu.max 200000/100000 at /sys/fs/cgroup/ci"


def cgroup_membership(proc_self_cgroup: Path = PROC_SELF_CGROUP) -> tuple[str | None, dict[str, str]]:
    """(v2 path, {v1 controller: path}) from ``/proc/self/cgroup``."""
    v2: str | None = None
    v1: dict[str, str] = {}
    try:
        text = proc_self_cgroup.read_text()
    except OSError:
        return None, {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        else:
            for controller in controllers.split(","):
                if controller:
                    v1[controller] = path
    return v2, v1


def _levels(base: Path, rel: str) -> list[Path]:
    """Our cgroup dir and its ancestors up to the mount, innermost first.

    With a cgroup namespace (or a container that mounts only its own cgroup), the path
    in /proc/self/cgroup does not exist under the mount: then the mount itself is ours.
    """
    leaf = base / rel.strip("/") if rel.strip("/") else base
    if not leaf.is_dir():
        return [base] if base.is_dir() else []
    out = [leaf]
    while out[-1] != base and base in out[-1].parents:
        out.append(out[-1].parent)
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _v2_base(root: Path) -> Path | None:
    # Pure v2 mounts the unified tree at the root; hybrid systems at root/unified.
    for base in (root, root / "unified"):
        if (base / "cgroup.controllers").exists():
            return base
    return None


def _v1_base(root: Path, controller: str) -> Path | None:
    for name in (controller, f"{controller},cpuacct", f"cpuacct,{controller}"):
        if (root / name).is_dir():
            return root / name
    return None


def _tightest(limits: list[CgroupLimit]) -> CgroupLimit | None:
    return min(limits, key=lambda l: l.value) if limits else None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> CgroupLimit | None:
    """The tightest CPU quota (in CPUs, may be fractional) over v2 and v1, or None."""
    v2_path, v1_paths = cgroup_membership(proc_self_cgroup)
    limits: list[CgroupLimit] = []
    base = _v2_base(root)
    if base is not None and v2_path is not None:
        for level in _levels(base, v2_path):
            text = _read(level / "cpu.max")
            if not text:
                continue
            quota, _, period = text.partition(" ")
            if quota == "max":
                continue
            try:
                q, p = int(quota), int(period or "100000")
            except ValueError:
                continue
            if q > 0 and p > 0:
                limits.append(CgroupLimit(q / p, f"cgroup v2 cpu.max {q}/{p} at {level}"))
    base = _v1_base(root, "cpu")
    if base is not None and "cpu" in v1_paths:
        for level in _levels(base, v1_paths["cpu"]):
            q = _read_int(level / "cpu.cfs_quota_us")
            p = _read_int(level / "cpu.cfs_period_us")
            if q is not None and p and q > 0:
                limits.append(CgroupLimit(q / p, f"cgroup v1 cpu.cfs_quota_us/cfs_period_us {q}/{p} at {level}"))
    return _tightest(limits)


def _stat_value(stat_text: str | None, *keys: str) -> int:
    if not stat_text:
        return 0
    values = dict(line.split(" ", 1) for line in stat_text.splitlines() if " " in line)
    for key in keys:
        try:
            return int(values[key])
        except (KeyError, ValueError):
            continue
    return 0


def cgroup_memory_available(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> CgroupLimit | None:
    """The tightest ``limit - working set`` over v2 and v1 levels, in bytes, or None.

    Working set = usage minus inactive page cache (what ``docker stats`` and the
    kubelet use): the kernel drops that cache before it OOM-kills, and counting it
    would make a cgroup that just ran a build look full.
    """
    v2_path, v1_paths = cgroup_membership(proc_self_cgroup)
    limits: list[CgroupLimit] = []
    base = _v2_base(root)
    if base is not None and v2_path is not None:
        for level in _levels(base, v2_path):
            text = _read(level / "memory.max")
            if not text or text == "max":
                continue
            try:
                limit = int(text)
            except ValueError:
                continue
            usage = _read_int(level / "memory.current") or 0
            inactive = _stat_value(_read(level / "memory.stat"), "inactive_file")
            working = max(0, usage - inactive)
            limits.append(
                CgroupLimit(max(0, limit - working), f"cgroup v2 memory.max {gib(limit)} - working set {gib(working)} at {level}")
            )
    base = _v1_base(root, "memory")
    if base is not None and "memory" in v1_paths:
        for level in _levels(base, v1_paths["memory"]):
            limit = _read_int(level / "memory.limit_in_bytes")
            if limit is None or limit >= _V1_UNLIMITED:
                continue
            usage = _read_int(level / "memory.usage_in_bytes") or 0
            inactive = _stat_value(_read(level / "memory.stat"), "total_inactive_file", "inactive_file")
            working = max(0, usage - inactive)
            limits.append(
                CgroupLimit(
                    max(0, limit - working),
                    f"cgroup v1 memory.limit_in_bytes {gib(limit)} - working set {gib(working)} at {level}",
                )
            )
    return _tightest(limits)


def host_available_memory() -> tuple[int, str]:
    """(bytes, source): psutil's available memory, else /proc/meminfo, else total RAM."""
    try:
        import psutil  # runtime dependency; the fallbacks keep a broken env usable

        return int(psutil.virtual_memory().available), "psutil available"
    except Exception:  # noqa: BLE001 - ImportError or a psutil platform failure
        pass
    text = _read(Path("/proc/meminfo"))
    if text:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
        if match:
            return int(match.group(1)) * 1024, "/proc/meminfo MemAvailable"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "total RAM (sysconf)"
    except (ValueError, OSError, AttributeError):
        return 0, "unknown (no psutil, /proc/meminfo or sysconf)"


def _affinity() -> tuple[int, str]:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)), "CPU affinity"
    return os.cpu_count() or 1, "os.cpu_count()"


def detect_cpus(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP, affinity: int | None = None
) -> CpuFacts:
    """Usable cores: CPU affinity (which already reflects cpusets) capped by the cgroup quota.

    A fractional quota is rounded down (1.5 CPUs -> 1): a second job would only
    be throttled. Never below 1.
    """
    count, how = (affinity, "CPU affinity") if affinity is not None else _affinity()
    limit = cgroup_cpu_limit(root, proc_self_cgroup)
    if limit is None or math.floor(limit.value) >= count:
        extra = f" (cgroup quota {limit.value:g} CPUs does not bind: {limit.what})" if limit else ""
        return CpuFacts(usable=max(1, count), source=f"{how} {count}{extra}")
    usable = max(1, math.floor(limit.value))
    return CpuFacts(usable=usable, source=f"min({how} {count}, {limit.what} = {limit.value:g} CPUs)")


def detect_memory(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP, host: tuple[int, str] | None = None
) -> MemoryFacts:
    """Available RAM: the host's available memory capped by the cgroup's headroom."""
    host_bytes, how = host if host is not None else host_available_memory()
    limit = cgroup_memory_available(root, proc_self_cgroup)
    if limit is None or limit.value >= host_bytes:
        return MemoryFacts(available_bytes=host_bytes, source=f"{how} {gib(host_bytes)}")
    return MemoryFacts(
        available_bytes=int(limit.value), source=f"min({how} {gib(host_bytes)}, {limit.what} = {gib(limit.value)})"
    )


_CAP_RE = re.compile(r"^\d+\.\d+$")


def _arch_key(arch: str) -> tuple[int, int]:
    major, minor = arch.split(".")
    return int(major), int(minor)


def parse_nvidia_smi(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(archs, names) from ``nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader``.

    One ``9.0, NVIDIA H100 80GB HBM3`` line per GPU; archs deduplicated and sorted,
    names one per GPU in device order. Lines without a valid capability are skipped.
    """
    archs: set[str] = set()
    names: list[str] = []
    for line in text.splitlines():
        cap, _, name = line.partition(",")
        cap = cap.strip()
        if not _CAP_RE.match(cap):
            continue
        archs.add(cap)
        names.append(name.strip())
    return tuple(sorted(archs, key=_arch_key)), tuple(names)


def gpus_from_nvml(nvml: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(archs, names) through an NVML binding (the ``pynvml`` module of nvidia-ml-py)."""
    nvml.nvmlInit()
    try:
        archs: set[str] = set()
        names: list[str] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            archs.add(f"{major}.{minor}")
            name = nvml.nvmlDeviceGetName(handle)
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        return tuple(sorted(archs, key=_arch_key)), tuple(names)
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down is best effort
            pass


_IMPORT = object()


def _import_nvml() -> Any:
    import pynvml  # from nvidia-ml-py

    return pynvml


def detect_gpus(env: Mapping[str, str], nvml: Any = _IMPORT) -> GpuFacts:
    """Local GPUs: NVML, else nvidia-smi, else none; the source lists what was tried.

    ``nvml`` is the binding to use: by default ``pynvml`` is imported; None skips NVML.
    """
    tried: list[str] = []
    if nvml is _IMPORT:
        try:
            nvml = _import_nvml()
        except ImportError:
            nvml = None
            tried.append("NVML: nvidia-ml-py not installed")
    elif nvml is None:
        tried.append("NVML: not tried")
    if nvml is not None:
        try:
            archs, names = gpus_from_nvml(nvml)
        except Exception as exc:  # noqa: BLE001 - NVMLError_* subclasses, driver missing
            tried.append(f"NVML: {first_line(str(exc)) or type(exc).__name__}")
        else:
            return GpuFacts(archs=archs, names=names, source=f"NVML ({len(names)} GPU{'s' if len(names) != 1 else ''})")

    smi = shutil.which("nvidia-smi", path=env.get("PATH", ""))
    if smi is None:
        tried.append("nvidia-smi: not on PATH")
    else:
        result = probe([smi, "--query-gpu=compute_cap,name", "--format=csv,noheader"], env)
        if result is None:
            tried.append(f"nvidia-smi: cannot run {smi}")
        elif not result.ok:
            detail = first_line(result.stdout or result.stderr) or f"exit code {result.returncode}"
            tried.append(f"nvidia-smi: {detail}")
        else:
            archs, names = parse_nvidia_smi(result.stdout)
            if names:
                return GpuFacts(archs=archs, names=names, source=f"nvidia-smi {smi} ({len(names)} GPU{'s' if len(names) != 1 else ''})")
            tried.append(f"nvidia-smi: no GPU listed by {smi}")
    return GpuFacts(archs=(), names=(), source="none (" + "; ".join(tried) + ")")
