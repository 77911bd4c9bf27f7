"""rotary_embedding against the torch reference: neox and gpt-j styles, partial rotary, 2-D
positions, strided query/key, no key."""
from __future__ import annotations

import pytest
import torch

import _kernel_ref as ref
from _kernel_utils import DTYPES, assert_close

MAX_POS = 64


def make_cache(rot_dim: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2, dtype=torch.float32) / rot_dim))
    freqs = torch.outer(torch.arange(MAX_POS, dtype=torch.float32), inv_freq)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1).to(dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize(
    "num_tokens,num_heads,num_kv_heads,head_size,rot_dim",
    [(0, 4, 2, 64, 64), (1, 1, 1, 2, 2), (5, 4, 2, 64, 64), (7, 3, 1, 80, 32), (9, 8, 8, 128, 128)],
)
def test_rotary_embedding(kl, device, dtype, is_neox, num_tokens, num_heads, num_kv_heads, head_size, rot_dim):
    positions = torch.randint(0, MAX_POS, (num_tokens,), device=device)
    query = torch.randn(num_tokens, num_heads * head_size, dtype=dtype, device=device)
    key = torch.randn(num_tokens, num_kv_heads * head_size, dtype=dtype, device=device)
    cache = make_cache(rot_dim, dtype, device)
    want_q, want_k = ref.rotary_embedding(positions, query, key, head_size, cache, is_neox)
    q, k = kl.rotary_embedding(positions, query, key, head_size, cache, is_neox)
    assert q is query and k is key
    assert_close(query.view(want_q.shape), want_q)
    assert_close(key.view(want_k.shape), want_k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_embedding_2d_positions_3d_heads_no_key(kl, device, dtype):
    head_size, rot_dim = 64, 32
    positions = torch.randint(0, MAX_POS, (2, 3), device=device)
    query = torch.randn(2, 3, 4, head_size, dtype=dtype, device=device)
    cache = make_cache(rot_dim, dtype, device)
    want_q, _ = ref.rotary_embedding(positions, query, None, head_size, cache, True)
    kl.rotary_embedding(positions, query, None, head_size, cache, True)
    assert_close(query, want_q)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_embedding_strided_query_key(kl, device, dtype):
    """q and k as column slices of one qkv tensor, as attention layers call it."""
    num_tokens, heads, kv_heads, head_size = 6, 4, 2, 64
    qkv = torch.randn(num_tokens, (heads + 2 * kv_heads) * head_size, dtype=dtype, device=device)
    query = qkv[:, : heads * head_size]
    key = qkv[:, heads * head_size: (heads + kv_heads) * head_size]
    positions = torch.randint(0, MAX_POS, (num_tokens,), device=device)
    cache = make_cache(head_size, dtype, device)
    value_before = qkv[:, (heads + kv_heads) * head_size:].clone()
    want_q, want_k = ref.rotary_embedding(positions, query, key, head_size, cache, False)
    kl.rotary_embedding(positions, query, key, head_size, cache, False)
    assert_close(query.reshape(want_q.shape), want_q)
    assert_close(key.reshape(want_k.shape), want_k)
    assert torch.equal(qkv[:, (heads + kv_heads) * head_size:], value_before)  # value untouched


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("is_neox", [True, False])
def test_rotary_embedding_batch_by_one_positions_with_sliced_query(kl, device, dtype, is_neox):
    """positions [B, 1] (decode) with q/k sliced out of a fused qkv and given a seq dim of 1: the
    size-1 dim's stride does not matter."""
    batch, heads, kv_heads, head_size = 5, 4, 2, 64
    qkv = torch.randn(batch, (heads + 2 * kv_heads) * head_size, dtype=dtype, device=device)
    query = qkv[:, : heads * head_size].unsqueeze(1)  # [B, 1, H*D], strides (W, H*D, 1)
    key = qkv[:, heads * head_size: (heads + kv_heads) * head_size].unsqueeze(1)
    positions = torch.randint(0, MAX_POS, (batch, 1), device=device)
    cache = make_cache(head_size, dtype, device)
    want_q, want_k = ref.rotary_embedding(positions, query, key, head_size, cache, is_neox)
    kl.rotary_embedding(positions, query, key, head_size, cache, is_neox)
    assert_close(qkv[:, : heads * head_size].reshape(want_q.shape), want_q)
    assert_close(qkv[:, heads * head_size: (heads + kv_heads) * head_size].reshape(want_k.shape), want_k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_embedding_head_strides(kl, device, dtype):
    """Heads further apart than head_size, heads interleaved with tokens ([H, T, D] transposed),
    more kv heads than query heads, partial gpt-j rotary."""
    tokens, head_size, rot_dim = 7, 64, 32
    padded = torch.randn(tokens, 2, head_size + 16, dtype=dtype, device=device)
    query = padded[:, :, :head_size]  # head stride 80
    key = torch.randn(4, tokens, head_size, dtype=dtype, device=device).transpose(0, 1)  # [T, 4, D]
    positions = torch.randint(0, MAX_POS, (tokens,), device=device)
    cache = make_cache(rot_dim, dtype, device)
    pad_before = padded[:, :, head_size:].clone()
    for is_neox in (True, False):
        want_q, want_k = ref.rotary_embedding(positions, query, key, head_size, cache, is_neox)
        kl.rotary_embedding(positions, query, key, head_size, cache, is_neox)
        assert_close(query, want_q)
        assert_close(key, want_k)
    assert torch.equal(padded[:, :, head_size:], pad_before)
