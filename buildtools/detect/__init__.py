"""Detection: the toolchain and the machine, as :class:`buildtools.model.Facts`.

``detect_all(DetectOptions(...))`` is the only entry point the rest of buildtools
needs; after it returns nothing else touches the machine until the runner. Each
concern has its own module (nvcc, python, torch, cuda_headers, machine, tools) whose
functions take their inputs (paths, env, cgroup root) as arguments, so tests can
point them at fake trees.

Errors a user caused (``--nvcc``/``--python``/``CUDA_HOME`` pointing nowhere) raise
KernloopError; anything merely absent (nvcc, torch, a GPU, ccache) is a None/empty
fact plus a line in ``Facts.notes``.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from buildtools.model import Facts
from buildtools.detect.cuda_headers import pip_cuda_include_dirs
from buildtools.detect.machine import CGROUP_ROOT, PROC_SELF_CGROUP, detect_cpus, detect_gpus, detect_memory
from buildtools.detect.nvcc import DEFAULT_NVCC, find_nvcc
from buildtools.detect.python import probe_python, python_notes
from buildtools.detect.tools import find_tools
from buildtools.detect.torch import torch_facts
from buildtools.versions import cuda_alignment, version_tuple

__all__ = ["DetectOptions", "detect_all"]


@dataclass(frozen=True)
class DetectOptions:
    """What the user chose, plus the places detection looks (overridable for tests)."""

    source_dir: Path = field(default_factory=Path.cwd)
    nvcc: Path | None = None  # --nvcc
    python: Path | None = None  # --python; None: the running interpreter
    env: Mapping[str, str] | None = None  # None: os.environ
    probe_nvml: bool = True  # False: skip NVML and go straight to nvidia-smi
    cgroup_root: Path = CGROUP_ROOT
    proc_self_cgroup: Path = PROC_SELF_CGROUP
    nvcc_fallbacks: tuple[Path, ...] = (DEFAULT_NVCC,)  # tried after PATH


class _Job(threading.Thread):
    """A probe on its own thread (concurrent.futures would add ~25 ms of imports)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._fn, self._args = fn, args
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = exc

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def detect_all(options: DetectOptions | None = None) -> Facts:
    """Detect every fact. Raises KernloopError for a setting of the user's that is wrong."""
    options = options or DetectOptions()
    env = dict(os.environ if options.env is None else options.env)

    # Independent probes overlap: most of the time is spent waiting on subprocesses
    # (nvcc x3, tool --version, the target Python, nvidia-smi), not on this process.
    nvcc_job = _Job(find_nvcc, options.nvcc, env, options.nvcc_fallbacks)
    gpus_job = _Job(detect_gpus, env, *(() if options.probe_nvml else (None,)))
    machine_job = _Job(
        lambda: (
            detect_cpus(options.cgroup_root, options.proc_self_cgroup),
            detect_memory(options.cgroup_root, options.proc_self_cgroup),
        )
    )
    try:
        py = probe_python(options.python, env)
        tools_job = _Job(find_tools, py.bin_dir, env, py.site_dirs)
        torch, torch_notes = torch_facts(py.torch_dir, py.facts.executable)
        tools = tools_job.result()
    finally:  # a --python error must not leave probes running behind the message
        for job in (nvcc_job, gpus_job, machine_job):
            job.join()
    nvcc, nvcc_notes = nvcc_job.result()
    gpus = gpus_job.result()
    cpus, memory = machine_job.result()

    notes = [*python_notes(py), *torch_notes, *nvcc_notes]
    cuda_major: int | None = None
    if torch is not None and torch.cuda:
        cuda_major = version_tuple(torch.cuda)[0]
    elif nvcc is not None:
        cuda_major = version_tuple(nvcc.version)[0]
    sites = ([py.torch_dir.parent] if py.torch_dir is not None else []) + list(py.site_dirs)
    includes = pip_cuda_include_dirs(sites, cuda_major)
    if nvcc is not None and torch is not None and torch.cuda:
        alignment = cuda_alignment(torch.version, torch.cuda, nvcc.version, nvcc.path)
        if alignment.level == "error":
            notes.append(alignment.line())
    notes += tools.notes

    return Facts(
        source_dir=Path(os.path.abspath(options.source_dir)),
        python=py.facts,
        torch=torch,
        nvcc=nvcc,
        cuda_extra_includes=includes,
        cpus=cpus,
        memory=memory,
        gpus=gpus,
        cmake=tools.cmake,
        ninja=tools.ninja,
        ccache=tools.ccache,
        sccache=tools.sccache,
        notes=tuple(notes),
        ccache_caches_nvcc=tools.ccache_caches_nvcc,
    )
