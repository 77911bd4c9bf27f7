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


def aten_ops_run(fn) -> set[str]:
    """Names of the aten ops fn dispatches (the op's internal calls included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events()}


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_reads_strided_rows_without_a_copy(kl, device, dtype):
    """Evenly strided rows of any rank are read through their row stride; only a layout no single
    row stride describes is copied (the second half shows the check can tell)."""
    w = torch.rand(128, dtype=dtype, device=device) + 0.5
    big = torch.randn(2, 3, 200, dtype=dtype, device=device)
    for x in (big[:, :, 8:136], big[1:, 1:, :128], torch.randn(1, 128, dtype=dtype, device=device).expand(5, 128)):
        out = kl.rms_norm(x, w, 1e-5)
        assert_close(out, ref.rms_norm(x, w, 1e-5))
        assert "aten::copy_" not in aten_ops_run(lambda: kl.rms_norm(x, w, 1e-5)), x.stride()
    x = big[:, :, :128].transpose(0, 1)  # leading dims transposed: no single row stride
    assert_close(kl.rms_norm(x, w, 1e-5), ref.rms_norm(x, w, 1e-5))
    assert "aten::copy_" in aten_ops_run(lambda: kl.rms_norm(x, w, 1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,cols", [((6, 160), slice(16, 144)), ((2, 3, 136), slice(0, 128)), ((1, 200), slice(3, 131))])
def test_fused_add_rms_norm_strided_input(kl, device, dtype, shape, cols):
    """input = big[..., cols] is updated in place through its row stride; the rest of big is
    untouched. residual stays contiguous (as in vLLM)."""
    big = torch.randn(shape, dtype=dtype, device=device)
    before = big.clone()
    x = big[..., cols]
    r = torch.randn(x.shape, dtype=dtype, device=device)
    w = torch.randn(x.shape[-1], dtype=dtype, device=device)
    want_out, want_res = ref.fused_add_rms_norm(x, r, w, 1e-6)
    kl.fused_add_rms_norm(x, r, w, 1e-6)
    assert_close(big[..., cols], want_out)
    assert_close(r, want_res)
    mask = torch.ones(shape, dtype=torch.bool)
    mask[..., cols] = False
    assert torch.equal(big.cpu()[mask], before.cpu()[mask])
