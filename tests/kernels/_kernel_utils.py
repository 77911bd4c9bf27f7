"""Dtypes and tolerances shared by the kernel tests."""
from __future__ import annotations

import torch

__all__ = ["DTYPES", "TOLERANCES", "assert_close"]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (rtol, atol): the kernels and the references round at the same points; these allow a
# rounding step to go the other way (float accumulation order, exp/rsqrt ulps, fma on the GPU).
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    rtol, atol = TOLERANCES[expected.dtype]
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=rtol, atol=atol)
