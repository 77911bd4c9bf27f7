"""Typed wrappers around kernloop's torch ops: they allocate outputs and call ``torch.ops``.

Semantics follow vLLM's ops of the same names (docs/kernels.md says which vLLM). Every argument
is checked in C++, so a bad call raises there (``RuntimeError`` for a bad shape/dtype/device,
``NotImplementedError`` for a device this build has no kernels for). The wrappers only size the
outputs, with arithmetic that cannot fail on a bad argument, so the op's message is the one the
caller sees.
"""
from __future__ import annotations

import torch

__all__ = [
    "rms_norm",
    "fused_add_rms_norm",
    "silu_and_mul",
    "rotary_embedding",
    "topk_softmax",
    "moe_align_block_size",
    "moe_sum",
]


def rms_norm(
    input: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, *, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``input * rsqrt(mean(input**2, -1) + eps) * weight`` over the last dimension."""
    if out is None:
        out = torch.empty(input.shape, dtype=input.dtype, device=input.device)
    torch.ops._C.rms_norm(out, input, weight, eps)
    return out


def fused_add_rms_norm(
    input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """In place: ``residual += input``, then ``input = rms_norm(residual, weight, eps)``.

    Returns ``(input, residual)``, the same tensors, updated.
    """
    torch.ops._C.fused_add_rms_norm(input, residual, weight, eps)
    return input, residual


def silu_and_mul(input: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(x) * y`` where ``x, y = input.chunk(2, dim=-1)``."""
    if out is None:
        shape = (*input.shape[:-1], input.shape[-1] // 2) if input.dim() else ()
        out = torch.empty(shape, dtype=input.dtype, device=input.device)
    torch.ops._C.silu_and_mul(out, input)
    return out


def rotary_embedding(
    positions: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor | None,
    head_size: int,
    cos_sin_cache: torch.Tensor,
    is_neox: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rotary position embedding, in place on ``query`` and ``key``.

    ``cos_sin_cache`` is ``[max_position, rot_dim]``: ``rot_dim // 2`` cosines then as many
    sines; the first ``rot_dim`` elements of each head are rotated (neox: halves pair up,
    otherwise adjacent elements do). Returns ``(query, key)``.
    """
    torch.ops._C.rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox)
    return query, key


def topk_softmax(
    gating_output: torch.Tensor,
    topk: int,
    *,
    renormalize: bool = False,
    bias: torch.Tensor | None = None,
    ids_dtype: torch.dtype = torch.int32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``topk`` experts per token by softmax probability, as vLLM's ``topk_softmax``.

    ``p = softmax(gating_output.float(), -1)``; experts are ranked by ``p + bias`` (``bias``:
    ``[num_experts]``, e.g. a router's score correction; it only selects) -- higher first, ties to
    the lower expert index, NaN last; the weights are ``p`` of the chosen experts, divided by
    their sum when ``renormalize``. Returns ``(topk_weights float32, topk_ids,
    token_expert_indices int32)``, each ``[num_tokens, topk]``, with
    ``token_expert_indices[t, j] = j * num_tokens + t``.
    """
    num_tokens = gating_output.shape[0] if gating_output.dim() else 0
    k = max(topk, 0)  # a bad topk reaches the op, which says what is wrong
    device = gating_output.device
    weights = torch.empty((num_tokens, k), dtype=torch.float32, device=device)
    ids = torch.empty((num_tokens, k), dtype=ids_dtype, device=device)
    token_expert_indices = torch.empty((num_tokens, k), dtype=torch.int32, device=device)
    torch.ops._moe_C.topk_softmax(weights, ids, token_expert_indices, gating_output, renormalize, bias)
    return weights, ids, token_expert_indices


def moe_align_block_size(
    topk_ids: torch.Tensor, block_size: int, num_experts: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group the entries of ``topk_ids`` by expert, each group padded to ``block_size``.

    Returns ``(sorted_token_ids, expert_ids, num_tokens_post_pad)`` as vLLM does: flat entry
    indices grouped by expert (padding = ``topk_ids.numel()``), the expert of each block
    (-1 past the last used block) and the padded total (a 1-element int32 tensor). Entries
    outside ``[0, num_experts)`` are skipped. On CUDA the order within a group is unspecified.
    """
    # Sizes as vLLM allocates them; out-of-range arguments are clamped here only so that the
    # op itself rejects them (block_size 0 is its RuntimeError, not a ZeroDivisionError here).
    bs = max(block_size, 1)
    e = min(max(num_experts, 0), 4096)  # 4096: kMaxAlignExperts, csrc/moe/limits.h
    max_num_tokens_padded = topk_ids.numel() + e * (bs - 1)
    max_num_blocks = -(-max_num_tokens_padded // bs)
    device = topk_ids.device
    sorted_token_ids = torch.empty(max_num_tokens_padded, dtype=torch.int32, device=device)
    expert_ids = torch.empty(max_num_blocks, dtype=torch.int32, device=device)
    num_tokens_post_pad = torch.empty(1, dtype=torch.int32, device=device)
    torch.ops._moe_C.moe_align_block_size(
        topk_ids, num_experts, block_size, sorted_token_ids, expert_ids, num_tokens_post_pad
    )
    return sorted_token_ids, expert_ids, num_tokens_post_pad


def moe_sum(input: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """``input.sum(dim=1)`` for ``input`` of shape ``[num_tokens, topk, hidden]``."""
    if out is None:
        shape = (input.shape[0], input.shape[2]) if input.dim() == 3 else input.shape
        out = torch.empty(shape, dtype=input.dtype, device=input.device)
    torch.ops._moe_C.moe_sum(input, out)
    return out
