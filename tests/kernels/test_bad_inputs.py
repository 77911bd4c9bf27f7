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
    with raises("residual must be contiguous"):
        kl.fused_add_rms_norm(torch.randn(4, 16, device=device), torch.randn(16, 4, device=device).t(), w)


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


def test_wrappers_let_the_op_reject_bad_arguments(kl, device):
    """The wrappers compute nothing that can fail first: a bad argument is the op's RuntimeError
    with its message, not an IndexError or ZeroDivisionError from the allocation."""
    ids = torch.randint(0, 8, (5, 2), dtype=torch.int32, device=device)
    with raises("block_size must be >= 1"):
        kl.moe_align_block_size(ids, 0, 8)
    with raises("block_size must be >= 1"):
        kl.moe_align_block_size(ids, -3, 8)
    with raises(r"num_experts must be in \[1, 4096\]"):
        kl.moe_align_block_size(ids, 16, 0)
    with raises(r"gating_output must be \[num_tokens, num_experts\]"):
        kl.topk_softmax(torch.tensor(1.0, device=device), 2)
    with raises(r"topk .* must be in \[1, num_experts = 6\]"):
        kl.topk_softmax(torch.randn(4, 6, device=device), -1)
    with raises(r"input must be \[num_tokens, topk, hidden\]"):
        kl.moe_sum(torch.randn(4, 8, device=device))
    with raises("input must have at least one dimension"):
        kl.silu_and_mul(torch.tensor(1.0, device=device))


def test_topk_softmax_rejects_bad_bias(kl, device):
    g = torch.randn(4, 6, device=device)
    with raises(r"bias must have shape \[num_experts = 6\]"):
        kl.topk_softmax(g, 2, bias=torch.zeros(5, device=device))
    with raises("bias must be float32, float16 or bfloat16"):
        kl.topk_softmax(g, 2, bias=torch.zeros(6, dtype=torch.int32, device=device))
    with pytest.raises((RuntimeError, NotImplementedError)):
        kl.topk_softmax(g, 2, bias=torch.zeros(6, device="meta"))


def test_in_place_outputs_must_own_their_elements(kl, device):
    """An expand()ed tensor written in place would make the result depend on thread order."""
    w = torch.randn(64, device=device)
    with raises("rows overlap"):
        kl.fused_add_rms_norm(torch.randn(1, 64, device=device).expand(8, 64), torch.randn(8, 64, device=device), w)
    q = torch.randn(1, 64, device=device).expand(8, 64)
    with raises("query is written in place but its heads or tokens overlap"):
        kl.rotary_embedding(torch.arange(8, device=device), q, None, 64, torch.randn(16, 64, device=device))
    k = torch.randn(8, 1, 64, device=device).expand(8, 2, 64)
    with raises("key is written in place but its heads or tokens overlap"):
        kl.rotary_embedding(torch.arange(8, device=device), torch.randn(8, 64, device=device), k, 64,
                            torch.randn(16, 64, device=device))


def test_outputs_must_not_overlap_inputs(kl, device):
    buf = torch.randn(4 * 64 + 32, device=device)
    a, b = buf[:256].view(4, 64), buf[32:288].view(4, 64)  # partial overlap
    w = torch.randn(64, device=device)
    with raises("out and input overlap in memory"):
        torch.ops._C.rms_norm(b, a, w, 1e-6)
    x = torch.randn(4, 64, device=device)
    torch.ops._C.rms_norm(x, x, w, 1e-6)  # in place (the same view) is allowed
    with raises("input and residual overlap in memory"):
        kl.fused_add_rms_norm(a, b, w)
    with raises("input and residual overlap in memory"):
        kl.fused_add_rms_norm(x, x, w)
    with raises("out and input overlap in memory"):
        kl.silu_and_mul(buf[:256].view(4, 64), out=buf[:128].view(4, 32))
    with raises("output and input overlap in memory"):
        kl.moe_sum(buf[:256].view(2, 2, 64), out=buf[128:256].view(2, 64))
    g = buf[:48].view(8, 6)
    with raises("topk_weights and gating_output overlap in memory"):
        torch.ops._moe_C.topk_softmax(buf[40:56].view(8, 2), torch.empty(8, 2, dtype=torch.int32, device=device),
                                      torch.empty(8, 2, dtype=torch.int32, device=device), g, False, None)
    ids = torch.zeros(64, dtype=torch.int32, device=device)
    with raises("topk_ids and sorted_token_ids overlap in memory"):
        torch.ops._moe_C.moe_align_block_size(ids[:8], 4, 2, ids, torch.empty(40, dtype=torch.int32, device=device),
                                              torch.empty(1, dtype=torch.int32, device=device))


def test_rotary_embedding_rejects_key_that_is_query(kl, device):
    q = torch.randn(3, 16, device=device)
    with raises("key and query are the same memory"):
        kl.rotary_embedding(torch.arange(3, device=device), q, q, 8, torch.randn(10, 8, device=device))


def test_fused_add_rms_norm_rejects_rows_no_stride_describes(kl, device):
    x = torch.randn(3, 2, 64, device=device).transpose(0, 1)  # [2, 3, 64], leading dims transposed
    with raises("the rows of input must be evenly strided"):
        kl.fused_add_rms_norm(x, torch.randn(2, 3, 64, device=device), torch.randn(64, device=device))
    with raises("the last dimension of input must be contiguous"):
        kl.fused_add_rms_norm(torch.randn(64, 4, device=device).t(), torch.randn(4, 64, device=device),
                              torch.randn(64, device=device))
