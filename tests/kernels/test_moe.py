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
@pytest.mark.parametrize("renormalize", [False, True])
def test_topk_softmax(kl, device, dtype, num_experts, topk, num_tokens, renormalize):
    gating = torch.randn(num_tokens, num_experts, dtype=dtype, device=device)
    weights, ids, src = kl.topk_softmax(gating, topk, renormalize=renormalize)
    want_w, want_ids, want_src = ref.topk_softmax(gating, topk, renormalize)
    assert weights.dtype == torch.float32 and ids.dtype == torch.int32 and src.dtype == torch.int32
    assert torch.equal(ids.cpu().long(), want_ids)
    torch.testing.assert_close(weights.cpu(), want_w, rtol=1e-5, atol=1e-6)
    assert torch.equal(src.cpu(), want_src)


@pytest.mark.parametrize("bias_dtype", DTYPES)
@pytest.mark.parametrize("num_experts,topk", [(8, 2), (60, 4), (600, 3)])
@pytest.mark.parametrize("renormalize", [False, True])
def test_topk_softmax_bias(kl, device, bias_dtype, num_experts, topk, renormalize):
    gating = torch.randn(17, num_experts, device=device)
    # Large enough to change the choice: without it the ids would differ (checked below).
    bias = (torch.randn(num_experts) * 0.5).to(device=device, dtype=bias_dtype)
    weights, ids, _ = kl.topk_softmax(gating, topk, renormalize=renormalize, bias=bias)
    want_w, want_ids, _ = ref.topk_softmax(gating, topk, renormalize, bias)
    assert torch.equal(ids.cpu().long(), want_ids)
    torch.testing.assert_close(weights.cpu(), want_w, rtol=1e-5, atol=1e-6)
    _, unbiased_ids, _ = ref.topk_softmax(gating, topk, renormalize)
    assert not torch.equal(want_ids, unbiased_ids)


def test_topk_softmax_ranks_float32_probabilities_lower_index_first(kl, device):
    """vLLM ranks the float32 probabilities: exp(-150) and exp(-200) both round to 0, so experts 1
    and 2 tie and the lower index comes first, although logit -150 > -200."""
    gating = torch.tensor([[0.0, -200.0, -150.0], [-150.0, 0.0, -200.0]], device=device)
    weights, ids, _ = kl.topk_softmax(gating, 3)
    assert ids.cpu().tolist() == [[0, 1, 2], [1, 0, 2]]
    assert weights.cpu().tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]


def test_topk_softmax_ties_go_to_the_lower_expert(kl, device):
    gating = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]], device=device)
    weights, ids, _ = kl.topk_softmax(gating, 4, ids_dtype=torch.int64)
    assert ids.dtype == torch.int64
    assert ids.cpu().tolist() == [[1, 2, 4, 0], [0, 1, 2, 3]]
    torch.testing.assert_close(weights[1].cpu(), torch.full((4,), 0.2))


def test_topk_softmax_bias_selects_weights_stay_unbiased(kl, device):
    gating = torch.tensor([[2.0, 1.0, 0.0]], device=device)
    probs = torch.softmax(gating.cpu(), -1)[0]
    bias = torch.tensor([0.0, 0.0, 1.0], device=device)
    weights, ids, _ = kl.topk_softmax(gating, 2, bias=bias)
    assert ids.cpu().tolist() == [[2, 0]]  # p + bias: 1.09 > 0.67 > 0.24
    torch.testing.assert_close(weights.cpu()[0], probs[[2, 0]])  # the probabilities, not p + bias
    weights, ids, _ = kl.topk_softmax(gating, 2, bias=bias, renormalize=True)
    torch.testing.assert_close(weights.cpu()[0], probs[[2, 0]] / probs[[2, 0]].sum())
    _, ids, _ = kl.topk_softmax(gating, 1, bias=torch.tensor([0.0, -float("inf"), float("inf")], device=device))
    assert ids.cpu().tolist() == [[2]]


def test_topk_softmax_renormalize(kl, device):
    gating = torch.tensor([[1.0, 2.0, 3.0, 4.0]], device=device)
    probs = torch.softmax(gating.cpu(), -1)[0]
    weights, ids, _ = kl.topk_softmax(gating, 2)
    assert ids.cpu().tolist() == [[3, 2]]
    torch.testing.assert_close(weights.cpu()[0], probs[[3, 2]])
    weights, _, _ = kl.topk_softmax(gating, 2, renormalize=True)
    torch.testing.assert_close(weights.cpu()[0], probs[[3, 2]] / probs[[3, 2]].sum())
    torch.testing.assert_close(weights.sum().cpu(), torch.tensor(1.0))


def test_topk_softmax_inf_and_nan(kl, device):
    """A NaN or +inf logit makes the row's softmax NaN (as torch.softmax): every score is NaN, the
    picks are the lowest indices, the weights NaN. -inf logits get probability 0 and rank after
    the finite ones. A NaN score ranks after every number."""
    inf, nan = float("inf"), float("nan")
    gating = torch.tensor([[0.0, nan, 1.0, 2.0], [0.0, inf, 1.0, 2.0], [-inf, 1.0, -inf, 0.0], [-inf] * 4,
                           [3.0, 3.0, 1.0, 3.0]], device=device)
    for renormalize in (False, True):
        weights, ids, _ = kl.topk_softmax(gating, 4, renormalize=renormalize)
        want_w, want_ids, _ = ref.topk_softmax(gating, 4, renormalize)
        assert ids.cpu().tolist() == want_ids.tolist()
        torch.testing.assert_close(weights.cpu(), want_w, equal_nan=True)
    assert want_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [1, 3, 0, 2], [0, 1, 2, 3], [0, 1, 3, 2]]
    assert weights[:2].isnan().all() and weights[3].isnan().all()
    # NaN in the bias: that expert's score is NaN, so it ranks last.
    _, ids, _ = kl.topk_softmax(torch.zeros(1, 4, device=device), 4, bias=torch.tensor([nan, 0, 0, 0], device=device))
    assert ids.cpu().tolist() == [[1, 2, 3, 0]]


@pytest.mark.parametrize("num_experts", [1, 5, 32, 100, 700])
def test_topk_softmax_topk_equals_experts(kl, device, num_experts):
    """topk = num_experts: every expert exactly once, in rank order."""
    gating = (torch.randint(-8, 8, (9, num_experts)) / 4).to(device)  # many exact ties
    weights, ids, _ = kl.topk_softmax(gating, num_experts, renormalize=True)
    want_w, want_ids, _ = ref.topk_softmax(gating, num_experts, True)
    assert torch.equal(ids.cpu().long(), want_ids)
    assert torch.equal(ids.cpu().sort(-1).values, torch.arange(num_experts, dtype=torch.int32).expand(9, -1))
    torch.testing.assert_close(weights.cpu(), want_w, rtol=1e-5, atol=1e-6)


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
