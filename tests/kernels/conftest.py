"""Kernel tests: the built kernloop (root conftest builds it once per session) on each device."""
from __future__ import annotations

from types import ModuleType

import pytest
import torch


@pytest.fixture(scope="session")
def kl(kernloop_module: ModuleType) -> ModuleType:
    return kernloop_module


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest, kl: ModuleType) -> str:
    if request.param == "cuda" and not kl.cuda_enabled():
        pytest.fail("a CUDA device is here but kernloop was built without its CUDA kernels "
                    "(no nvcc, or a CPU torch?) -- see the configure log")
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
