"""Bad calls raise a Python exception with a message naming the problem; nothing crashes."""
from __future__ import annotations

import pytest
import torch


def raises(match: str):
    return pytest.raises(RuntimeError, match=match)


def test_rms_norm_rejects(kl, device):
    x = torch.randn(4, 16, device=device)
    w = torch.randn(16, device=device)
    with raises("input must be float32, float16 or bfloat16"):
        torch.ops._C.rms_norm(torch.empty(4, 16, dtype=torch.int32, device=device), x.int(), w, 1e-6)
    with raises("weight .* must have the dtype of input"):
        kl.rms_norm(x, w.half())
    with raises(r"weight must have shape \[16\]"):
        kl.rms_norm(x, w[:8])
    with raises("out must have the shape of input"):
        torch.ops._C.rms_norm(torch.empty(4, 8, device=device), x, w, 1e-6)
    with raises("out must be contiguous"):
        torch.ops._C.rms_norm(torch.empty(16, 4, device=device).t(), x, w, 1e-6)
    with raises("hidden size .* must be > 0"):
        kl.rms_norm(torch.empty(3, 0, device=device), torch.empty(0, device=device))


def test_fused_add_rms_norm_rejects(kl, device):
    x = torch.randn(4, 16, device=device)
    w = torch.randn(16, device=device)
    with raises("residual must have the shape of input"):
        kl.fused_add_rms_norm(x, torch.randn(4, 8, device=device), w)
    with raises("input must be contiguous"):
        kl.fused_add_rms_norm(torch.randn(16, 4, device=device).t(), torch.randn(4, 16, device=device), w)


def test_silu_and_mul_rejects(kl, device):
    with raises("must be even"):
        torch.ops._C.silu_and_mul(torch.empty(2, 3, device=device), torch.randn(2, 7, device=device))
    with raises(r"out must have shape \[\.\.\., 4\]"):
        torch.ops._C.silu_and_mul(torch.empty(2, 5, device=device), torch.randn(2, 8, device=device))
    with raises("out .* must have the dtype of input"):
        torch.ops._C.silu_and_mul(torch.empty(2, 4, device=device, dtype=torch.half), torch.randn(2, 8, device=device))


def test_rotary_embedding_rejects(kl, device):
    q = torch.randn(3, 2 * 8, device=device)
    k = torch.randn(3, 8, device=device)
    cache = torch.randn(10, 8, device=device)
    pos = torch.tensor([0, 1, 2], device=device)
    with raises("positions must be Long"):
        kl.rotary_embedding(pos.int(), q, k, 8, cache)
    with raises("must be a multiple of head_size"):
        kl.rotary_embedding(pos, torch.randn(3, 12, device=device), k, 8, cache)
    with raises("rot_dim.* must be even"):
        kl.rotary_embedding(pos, q, k, 8, torch.randn(10, 7, device=device))
    with raises("rot_dim.* must be even and in"):
        kl.rotary_embedding(pos, q, k, 4, cache)  # rot_dim 8 > head_size 4
    with raises("leading dimensions of query"):
        kl.rotary_embedding(pos, torch.randn(4, 16, device=device), k, 8, cache)
    with raises("cos_sin_cache .* must have the dtype of query"):
        kl.rotary_embedding(pos, q, k, 8, cache.half())


def test_rotary_embedding_rejects_out_of_range_positions_on_cpu(kl):
    q = torch.randn(3, 8)
    before = q.clone()
    with raises(r"outside the cos_sin_cache \(10 positions\)"):
        kl.rotary_embedding(torch.tensor([0, 10, 1]), q, None, 8, torch.randn(10, 8))
    assert torch.equal(q, before)  # checked before anything is written


def test_topk_softmax_rejects(kl, device):
    g = torch.randn(4, 6, device=device)
    with raises(r"topk .* must be in \[1, num_experts = 6\]"):
        kl.topk_softmax(g, 7)
    with raises("topk_ids must be int32 or int64"):
        kl.topk_softmax(g, 2, ids_dtype=torch.float32)
    with raises("gating_output must be float32, float16 or bfloat16"):
        kl.topk_softmax(g.double(), 2)
    with raises(r"topk_ids must have shape \[4, 2\]"):
        w, _, src = kl.topk_softmax(g, 2)
        torch.ops._moe_C.topk_softmax(w, torch.empty(3, 2, dtype=torch.int32, device=device), src, g, False, None)


def test_moe_align_block_size_rejects(kl, device):
    ids = torch.randint(0, 8, (5, 2), dtype=torch.int32, device=device)
    with raises(r"num_experts must be in \[1, 4096\]"):
        kl.moe_align_block_size(ids, 16, 4097)
    with raises("block_size must be >= 1"):
        torch.ops._moe_C.moe_align_block_size(ids, 8, 0, torch.empty(100, dtype=torch.int32, device=device),
                                              torch.empty(10, dtype=torch.int32, device=device),
                                              torch.empty(1, dtype=torch.int32, device=device))
    with raises("sorted_token_ids must be 1-D with at least"):
        torch.ops._moe_C.moe_align_block_size(ids, 8, 16, torch.empty(20, dtype=torch.int32, device=device),
                                              torch.empty(100, dtype=torch.int32, device=device),
                                              torch.empty(1, dtype=torch.int32, device=device))
    with raises("topk_ids must be int32 or int64"):
        kl.moe_align_block_size(ids.float(), 16, 8)


def test_moe_sum_rejects(kl, device):
    with raises(r"input must be \[num_tokens, topk, hidden\]"):
        torch.ops._moe_C.moe_sum(torch.randn(4, 8, device=device), torch.empty(4, 8, device=device))
    with raises(r"output must have shape \[4, 8\]"):
        torch.ops._moe_C.moe_sum(torch.randn(4, 2, 8, device=device), torch.empty(4, 7, device=device))


def test_mixed_devices_raise(kl):
    """A tensor on another device than the rest never reaches a kernel."""
    x = torch.randn(2, 8)
    with pytest.raises((RuntimeError, NotImplementedError)):
        kl.rms_norm(x, torch.randn(8, device="meta"))
