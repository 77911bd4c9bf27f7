"""Pure-torch references for kernloop's ops (vLLM's semantics), computed on the CPU in float32 and
rounded to the op's dtype at the same points as the kernels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "rms_norm",
    "fused_add_rms_norm",
    "silu_and_mul",
    "rotary_embedding",
    "topk_softmax",
    "moe_align_block_size",
    "moe_sum",
]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.cpu().float()
    inv = torch.rsqrt(xf.double().pow(2).mean(-1, keepdim=True) + eps).float()
    return ((xf * inv).to(x.dtype).float() * weight.cpu().float()).to(x.dtype)


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float):
    z = (x.cpu().float() + residual.cpu().float()).to(x.dtype)
    return rms_norm(z, weight, eps), z


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    xf = x.cpu().float()
    d = x.shape[-1] // 2
    silu = F.silu(xf[..., :d]).to(x.dtype).float()
    return (silu * xf[..., d:]).to(x.dtype)


def rotary_embedding(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor | None, head_size: int,
                     cos_sin_cache: torch.Tensor, is_neox: bool):
    """Returns the rotated (query, key) as new tensors shaped [*positions.shape, heads, head_size]."""
    rot_dim = cos_sin_cache.shape[1]
    cache = cos_sin_cache.cpu().float()[positions.cpu().flatten()]  # [tokens, rot_dim]
    cos, sin = cache[:, : rot_dim // 2], cache[:, rot_dim // 2:]

    def rotate(t: torch.Tensor) -> torch.Tensor:
        heads = t.shape[-2] if t.dim() == positions.dim() + 2 else t.shape[-1] // head_size
        shape = (*positions.shape, heads, head_size)
        tf = t.cpu().float().reshape(positions.numel(), heads, head_size).clone()
        c, s = cos[:, None, :], sin[:, None, :]
        if is_neox:
            x1, x2 = tf[..., : rot_dim // 2].clone(), tf[..., rot_dim // 2: rot_dim].clone()
            tf[..., : rot_dim // 2] = x1 * c - x2 * s
            tf[..., rot_dim // 2: rot_dim] = x2 * c + x1 * s
        else:
            x1, x2 = tf[..., 0:rot_dim:2].clone(), tf[..., 1:rot_dim:2].clone()
            tf[..., 0:rot_dim:2] = x1 * c - x2 * s
            tf[..., 1:rot_dim:2] = x2 * c + x1 * s
        return tf.to(t.dtype).reshape(shape)

    return rotate(query), (rotate(key) if key is not None else None)


def rank_order(score: torch.Tensor) -> torch.Tensor:
    """Per row, the column indices in vLLM's rank order: higher score first, NaN after every
    number, equal scores (and NaN against NaN) by the lower index. Two stable sorts: by score
    (NaN as -inf), then NaNs to the back."""
    key = torch.where(score.isnan(), torch.full_like(score, float("-inf")), score)
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    nan_last = torch.sort(score.isnan().gather(-1, order).to(torch.int8), dim=-1, stable=True).indices
    return order.gather(-1, nan_last)


def topk_softmax(gating: torch.Tensor, topk: int, renormalize: bool = False, bias: torch.Tensor | None = None):
    """(weights, ids, token_expert_indices) as vLLM's topk_softmax: float32 softmax probabilities,
    experts ranked by probability + bias (bias selects only), weights renormalized on request."""
    g = gating.cpu().float()
    probs = torch.softmax(g, dim=-1)
    score = probs if bias is None else probs + bias.cpu().float()
    order = rank_order(score)[:, :topk]
    weights = probs.gather(1, order)
    if renormalize:
        denom = weights.sum(dim=-1, keepdim=True)
        weights = weights / torch.where(denom > 0, denom, torch.ones_like(denom))
    num_tokens = g.shape[0]
    src = (torch.arange(topk)[None, :] * num_tokens + torch.arange(num_tokens)[:, None]).to(torch.int32)
    return weights, order, src


def moe_align_block_size(topk_ids: torch.Tensor, block_size: int, num_experts: int, sorted_len: int,
                         expert_len: int):
    """Stable grouping: (sorted_token_ids, expert_ids, num_tokens_post_pad). Entries outside
    [0, num_experts) are skipped; each expert's group is padded to a multiple of block_size with
    topk_ids.numel(); expert_ids is -1 past the last used block."""
    flat = topk_ids.cpu().flatten().long()
    numel = flat.numel()
    keep = (flat >= 0) & (flat < num_experts)
    entries = torch.arange(numel)[keep]
    experts = flat[keep]
    counts = torch.bincount(experts, minlength=num_experts)
    padded = (counts + block_size - 1) // block_size * block_size
    group_start = torch.cumsum(padded, 0) - padded
    order = torch.sort(experts, stable=True).indices  # by expert, entry order kept within one
    first_of_expert = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel()) - first_of_expert[experts[order]]
    sorted_ids = torch.full((sorted_len,), numel, dtype=torch.int32)
    sorted_ids[group_start[experts[order]] + rank] = entries[order].to(torch.int32)
    block_experts = torch.repeat_interleave(torch.arange(num_experts), padded // block_size)
    expert_ids = torch.full((expert_len,), -1, dtype=torch.int32)
    expert_ids[: block_experts.numel()] = block_experts.to(torch.int32)
    return sorted_ids, expert_ids, torch.tensor([int(padded.sum())], dtype=torch.int32)


def moe_sum(x: torch.Tensor) -> torch.Tensor:
    return x.cpu().float().sum(dim=1).to(x.dtype)
