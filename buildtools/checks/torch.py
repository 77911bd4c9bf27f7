"""Does the installed torch fit nvcc, the NVIDIA driver, Python and the compatibility matrix? (pure)

Severity, as a kernel developer feels it:

- error: the build or the run will fail (nvcc's CUDA major differs from torch's; a driver whose CUDA
  major is older than torch's);
- warning: works with caveats or is outside what PyTorch publishes (minor-version mismatches, a torch the
  matrix does not know, no nvcc for a CUDA torch);
- note: worth knowing, not a problem (no driver on a build machine, a CPU torch with nvcc around).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from buildtools.model import TorchFacts
from buildtools.torchenv.driver import DriverFacts, max_cuda_for_driver
from buildtools.torchenv.matrix import Matrix, parse_torch_version
from buildtools.versions import release_tuple
from buildtools.checks.findings import LEVELS, worst
from buildtools.versions import cuda_alignment

__all__ = ["CheckItem", "CheckReport", "check_alignment", "STATUSES"]

STATUSES = LEVELS  # one vocabulary with doctor (buildtools.checks.findings)


class _Nvcc(Protocol):  # buildtools.model.NvccFacts, or anything with these two fields
    @property
    def version(self) -> str: ...

    @property
    def path(self) -> object: ...


@dataclass(frozen=True)
class CheckItem:
    subject: str  # "torch", "python", "cuda", "nvcc", "driver"
    status: str  # one of STATUSES
    message: str


@dataclass(frozen=True)
class CheckReport:
    items: tuple[CheckItem, ...]

    @property
    def ok(self) -> bool:
        return not any(i.status == "error" for i in self.items)

    @property
    def worst(self) -> str:
        return worst(i.status for i in self.items)


def _mm(version: str) -> tuple[int, int]:
    t = release_tuple(".".join(version.split(".")[:2]))
    return (t[0], t[1] if len(t) > 1 else 0)


def check_alignment(
    torch: TorchFacts,
    python_version: str,
    nvcc: _Nvcc | None,
    driver: DriverFacts | None,
    matrix: Matrix,
) -> CheckReport:
    items: list[CheckItem] = []
    add = lambda subject, status, message: items.append(CheckItem(subject, status, message))  # noqa: E731

    public, _ = parse_torch_version(torch.version)
    flavour = f"CUDA {torch.cuda}" if torch.cuda else (f"ROCm/HIP {torch.hip}" if torch.hip else "CPU-only")
    release = matrix.release(public)
    if release is None:
        add("torch", "warning", f"{torch.version} ({flavour}) is outside the matrix ({matrix.span}): "
            "its CUDA/Python support is not checked; update buildtools/torchenv/torch_matrix.json")
    elif str(public) not in release.patches:
        add("torch", "warning", f"{torch.version} ({flavour}): the matrix knows {release.minor} but not the "
            f"{public} patch release ({', '.join(release.patches)})")
    else:
        add("torch", "ok", f"{torch.version} ({flavour}), in the matrix")

    if release is not None:
        if release.python.supports(python_version):
            add("python", "ok", f"{python_version}: torch {release.minor} supports Python {release.python}")
        else:
            add("python", "warning", f"{python_version}: torch {release.minor} publishes wheels for Python "
                f"{release.python} only")
        if torch.cuda:
            status = release.cuda_status(torch.cuda)
            offered = ", ".join(release.cuda)
            if status is None:
                add("cuda", "warning", f"CUDA {torch.cuda} is not a CUDA torch {release.minor} publishes ({offered}): "
                    "a custom build?")
            else:
                add("cuda", "ok", f"CUDA {torch.cuda} is a {status} CUDA of torch {release.minor} ({offered})")
        elif torch.hip and release.rocm:
            hip_mm = ".".join(torch.hip.split(".")[:2])
            if any(r.startswith(hip_mm) for r in release.rocm):
                add("rocm", "ok", f"ROCm {hip_mm} is published for torch {release.minor}")
            else:
                add("rocm", "warning", f"ROCm {torch.hip} is not a ROCm torch {release.minor} publishes "
                    f"({', '.join(release.rocm)})")

    # nvcc: building CUDA extensions needs nvcc's CUDA major to equal torch's (torch's cpp_extension
    # refuses a major mismatch and warns on a minor one).
    if torch.cuda:
        if nvcc is None:
            add("nvcc", "warning", f"not found: CUDA kernels cannot be built against torch's CUDA {torch.cuda} "
                "(install a CUDA toolkit, or pass --nvcc PATH)")
        else:
            alignment = cuda_alignment(torch.version, torch.cuda, nvcc.version, nvcc.path)
            add("nvcc", alignment.level, alignment.line())
    elif nvcc is not None:
        add("nvcc", "note", f"{nvcc.version} ({nvcc.path}) is present but torch is {flavour}: "
            "no CUDA kernels are built against it")

    # driver: running needs a driver whose CUDA is at least torch's (same major at the very least).
    driver_cuda = None
    if driver is not None:
        driver_cuda = driver.cuda or (
            max_cuda_for_driver(driver.version, matrix.cuda_min_driver) if driver.version else None
        )
    what = f"NVIDIA driver {driver.version or '?'} (CUDA {driver_cuda or '?'}; {driver.source})" if driver else ""
    if torch.cuda:
        if driver is None:
            add("driver", "note", "no NVIDIA driver found (no NVML library, no nvidia-smi): kernels can be "
                "built here but not run on a GPU; not a failure on a build or CPU machine")
        elif driver_cuda is None:
            add("driver", "warning", f"{what}: cannot tell which CUDA it supports")
        else:
            d, t = _mm(driver_cuda), _mm(torch.cuda)
            need = matrix.min_driver(torch.cuda)
            hint = f"update the driver to >= {need}" if need else "update the driver"
            if d >= t:
                add("driver", "ok", f"{what} runs torch's CUDA {torch.cuda}")
            elif d[0] == t[0]:
                add("driver", "warning", f"{what} is older than torch's CUDA {torch.cuda}: runs through CUDA minor-"
                    f"version compatibility (no PTX JIT for newer archs); {hint}")
            else:
                add("driver", "error", f"{what} cannot run torch's CUDA {torch.cuda}: {hint}, or install a "
                    f"torch for CUDA {d[0]}.x (python -m buildtools torch index --platform auto)")
    elif driver is not None:
        add("driver", "note", f"{what}: torch is {flavour}; a CUDA torch would use the GPU "
            "(python -m buildtools torch index --platform auto)")
    elif not torch.hip:
        add("driver", "note", f"no NVIDIA driver found; fine for a {flavour} torch")
    return CheckReport(tuple(items))
