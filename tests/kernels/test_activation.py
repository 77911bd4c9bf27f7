"""silu_and_mul against the torch reference."""
from __future__ import annotations

import pytest
import torch

import _kernel_ref as ref
from _kernel_utils import DTYPES, assert_close

# d = half of the last dimension: 0 tokens, d below/not a multiple of the vector width, large d.
SHAPES = [(0, 16), (1, 2), (3, 14), (4, 200), (2, 5, 256), (3, 11008 * 2), (2, 4097 * 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_silu_and_mul(kl, device, dtype, shape):
    x = torch.randn(shape, dtype=dtype, device=device) * 3
    out = kl.silu_and_mul(x)
    assert out.shape == (*shape[:-1], shape[-1] // 2) and out.dtype == dtype
    assert_close(out, ref.silu_and_mul(x))


def test_silu_and_mul_extremes(kl, device):
    x = torch.tensor([[-100.0, 0.0, 100.0, 1.0, 2.0, 3.0]], device=device)
    out = kl.silu_and_mul(x)
    torch.testing.assert_close(out.cpu(), ref.silu_and_mul(x))
    assert torch.isfinite(out).all()
