"""Fake :class:`buildtools.model.Facts` for planner/presets unit tests (machines we do not have)."""
from __future__ import annotations

from pathlib import Path

from buildtools.model import (
    CpuFacts,
    Facts,
    GpuFacts,
    MemoryFacts,
    NvccFacts,
    Program,
    PythonFacts,
    TorchFacts,
)

GIB = 1024**3
NVCC13_ARCHS = ("7.5", "8.0", "8.6", "8.7", "8.8", "8.9", "9.0", "10.0", "10.3", "11.0", "12.0", "12.1")


def program(name: str, version: str | None = "1.0", where: str = "/opt/tools/bin") -> Program:
    return Program(name=name, path=Path(where) / name, version=version, source="fake")


def make_facts(
    *,
    source_dir: Path = Path("/home/dev/kernloop"),
    nvcc: bool = True,
    nvcc_version: str = "13.0",
    nvcc_archs: tuple[str, ...] = NVCC13_ARCHS,
    torch: bool = True,
    torch_cuda: str | None = "13.0",
    torch_hip: str | None = None,
    gpu_archs: tuple[str, ...] = (),
    cores: int = 12,
    ram_gib: float = 14.2,
    ram_bytes: int | None = None,
    ccache: str | None = "4.14.2",
    ccache_caches_nvcc: bool | None = None,
    sccache: str | None = None,
    ninja: bool = True,
    cmake: bool = True,
    extra_includes: tuple[Path, ...] = (Path("/venv/site-packages/nvidia/cu13/include"),),
    python: Path = Path("/home/dev/kernloop/.venv/bin/python"),
) -> Facts:
    nvcc_facts = None
    if nvcc:
        nvcc_facts = NvccFacts(
            path=Path(f"/usr/local/cuda-{nvcc_version}/bin/nvcc"),
            found_as=Path("/usr/local/bin/nvcc"),
            root=Path(f"/usr/local/cuda-{nvcc_version}"),
            version=nvcc_version,
            archs=nvcc_archs,
            source="fake wrapper",
        )
    torch_facts = None
    if torch:
        suffix = f"+cu{torch_cuda.replace('.', '')}" if torch_cuda else "+cpu"
        root = Path("/venv/site-packages/torch")
        torch_facts = TorchFacts(version=f"2.14.1{suffix}", cuda=torch_cuda, hip=torch_hip, root=root,
                                 cmake_prefix=root / "share" / "cmake", cxx11_abi=True, source="fake")
    return Facts(
        source_dir=source_dir,
        python=PythonFacts(executable=python, version="3.11.7", source="fake"),
        torch=torch_facts,
        nvcc=nvcc_facts,
        cuda_extra_includes=extra_includes if nvcc else (),
        cpus=CpuFacts(usable=cores, source="fake"),
        memory=MemoryFacts(available_bytes=ram_bytes if ram_bytes is not None else int(ram_gib * GIB), source="fake"),
        gpus=GpuFacts(archs=gpu_archs, names=tuple(f"GPU{i}" for i in range(len(gpu_archs))), source="fake"),
        cmake=program("cmake", "4.4.4") if cmake else None,
        ninja=program("ninja", "1.13.2") if ninja else None,
        ccache=program("ccache", ccache) if ccache else None,
        sccache=program("sccache", sccache) if sccache else None,
        ccache_caches_nvcc=ccache_caches_nvcc,
    )
