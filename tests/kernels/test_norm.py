"""rms_norm and fused_add_rms_norm against the torch reference."""
from __future__ import annotations

import pytest
import torch

import _kernel_ref as ref
from _kernel_utils import DTYPES, assert_close

# 0 tokens; hidden sizes that are and are not multiples of the 16-byte vector width (4 fp32 /
# 8 fp16 elements); a row longer than one block of threads.
SHAPES = [(0, 64), (1, 8), (3, 7), (5, 100), (4, 1000), (2, 3, 4096), (7, 5003)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm(kl, device, dtype, shape):
    x = torch.randn(shape, dtype=dtype, device=device)
    w = torch.randn(shape[-1], dtype=dtype, device=device)
    out = kl.rms_norm(x, w, 1e-6)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert_close(out, ref.rms_norm(x, w, 1e-6))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_strided_rows_and_in_place(kl, device, dtype):
    wide = torch.randn(6, 160, dtype=dtype, device=device)
    x = wide[:, 16:144]  # rows 160 apart, 128 wide
    w = torch.rand(128, dtype=dtype, device=device) + 0.5
    expected = ref.rms_norm(x, w, 1e-5)
    assert_close(kl.rms_norm(x, w, 1e-5), expected)
    assert_close(kl.rms_norm(x.t().contiguous().t(), w, 1e-5), expected)  # column-major: copied
    y = x.contiguous()
    torch.ops._C.rms_norm(y, y, w, 1e-5)
    assert_close(y, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_add_rms_norm(kl, device, dtype, shape):
    x = torch.randn(shape, dtype=dtype, device=device)
    r = torch.randn(shape, dtype=dtype, device=device)
    w = torch.randn(shape[-1], dtype=dtype, device=device)
    want_out, want_res = ref.fused_add_rms_norm(x, r, w, 1e-6)
    out, res = kl.fused_add_rms_norm(x, r, w, 1e-6)
    assert out is x and res is r
    assert_close(r, want_res)
    assert_close(x, want_out)
