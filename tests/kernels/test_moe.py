"""topk_softmax, moe_align_block_size and moe_sum against the torch reference."""
from __future__ import annotations

import pytest
import torch

import _kernel_ref as ref
from _kernel_utils import DTYPES, assert_close

# num_experts: powers of two and not, up to the register path's limit (512) and past it.
EXPERTS_TOPK = [(1, 1), (6, 2), (8, 1), (60, 4), (64, 8), (257, 8), (512, 6), (600, 3), (1000, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_experts,topk", EXPERTS_TOPK)
@pytest.mark.parametrize("num_tokens", [0, 1, 33])
def test_topk_softmax(kl, device, dtype, num_experts, topk, num_tokens):
    gating = torch.randn(num_tokens, num_experts, dtype=dtype, device=device)
    weights, ids, src = kl.topk_softmax(gating, topk)
    want_w, want_ids, want_src = ref.topk_softmax(gating, topk)
    assert weights.dtype == torch.float32 and ids.dtype == torch.int32 and src.dtype == torch.int32
    assert torch.equal(ids.cpu().long(), want_ids)
    torch.testing.assert_close(weights.cpu(), want_w, rtol=1e-5, atol=1e-6)
    assert torch.equal(src.cpu(), want_src)


def test_topk_softmax_ties_go_to_the_lower_expert(kl, device):
    gating = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]], device=device)
    weights, ids, _ = kl.topk_softmax(gating, 4, ids_dtype=torch.int64)
    assert ids.dtype == torch.int64
    assert ids.cpu().tolist() == [[1, 2, 4, 0], [0, 1, 2, 3]]
    torch.testing.assert_close(weights[1].cpu(), torch.full((4,), 0.2))


def _check_align(kl, topk_ids, block_size, num_experts, *, exact_order):
    sorted_ids, expert_ids, total = kl.moe_align_block_size(topk_ids, block_size, num_experts)
    want_sorted, want_experts, want_total = ref.moe_align_block_size(
        topk_ids, block_size, num_experts, sorted_ids.numel(), expert_ids.numel())
    assert torch.equal(total.cpu(), want_total)
    assert torch.equal(expert_ids.cpu(), want_experts)
    got = sorted_ids.cpu()
    if exact_order:
        assert torch.equal(got, want_sorted)
    else:  # CUDA fills each expert's group with atomics: compare each group as a multiset
        n = int(want_total)
        for e in range(num_experts):
            rows = (want_experts == e).nonzero().flatten()
            if len(rows):
                seg = slice(int(rows[0]) * block_size, (int(rows[-1]) + 1) * block_size)
                assert sorted(got[seg].tolist()) == sorted(want_sorted[seg].tolist())
        assert torch.equal(got[n:], want_sorted[n:])


@pytest.mark.parametrize("id_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize(
    "num_tokens,topk,num_experts,block_size",
    [(0, 2, 8, 16), (1, 1, 1, 1), (5, 2, 8, 64), (33, 1, 6, 16), (100, 4, 60, 16), (257, 8, 257, 32),
     (40, 2, 4096, 128), (3000, 8, 64, 64)],
)
def test_moe_align_block_size(kl, device, id_dtype, num_tokens, topk, num_experts, block_size):
    topk_ids = torch.randint(0, num_experts, (num_tokens, topk), dtype=id_dtype, device=device)
    _check_align(kl, topk_ids, block_size, num_experts, exact_order=device == "cpu")


def test_moe_align_block_size_skips_other_ranks_experts(kl, device):
    """Expert parallelism: ids < 0 or >= num_experts belong elsewhere and are skipped."""
    topk_ids = torch.tensor([[0, -1], [5, 1], [1, 9], [-1, 0]], dtype=torch.int32, device=device)
    _check_align(kl, topk_ids, 4, 6, exact_order=device == "cpu")
    _, _, total = kl.moe_align_block_size(topk_ids, 4, 6)
    assert int(total) == 12  # experts 0, 1, 5 each padded to one block


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_tokens,topk,hidden", [(0, 2, 64), (1, 1, 8), (3, 2, 7), (4, 8, 100), (5, 3, 4096)])
def test_moe_sum(kl, device, dtype, num_tokens, topk, hidden):
    x = torch.randn(num_tokens, topk, hidden, dtype=dtype, device=device)
    out = kl.moe_sum(x)
    assert out.shape == (num_tokens, hidden) and out.dtype == dtype
    assert_close(out, ref.moe_sum(x))
