// CPU kernels of the _moe_C module: raw pointers and sizes, no torch (the glue in moe_ops.cpp
// checks the tensors first).
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace kernloop::moe::cpu {

// Per token, as vLLM's topk_softmax (see docs/kernels.md):
//   p[e]     = exp(x[e] - max(x)) * (1 / sum(exp(x - max(x))))   in float32 (x = the logits);
//   score[e] = p[e] + bias[e] (bias: num_experts float32, or null for no bias);
//   the k experts of highest score, in rank order: higher score first, NaN after every number,
//   equal scores to the lower expert index (so probabilities that round to the same float32,
//   e.g. two that underflow to 0, go to the lower index even when their logits differ);
//   topk_weights = their p (bias only selects), divided by their sum when renormalize (by 1
//   when that sum is not > 0); token_expert_indices[t, j] = j * num_tokens + t.
void topk_softmax(float* topk_weights, void* topk_ids, IndexType id_type, int32_t* token_expert_indices,
                  const void* gating_output, const float* bias, int64_t num_tokens, int64_t num_experts,
                  int64_t topk, bool renormalize, DType dtype);

// Groups the numel entries of topk_ids by expert, each expert's group padded to a multiple of
// block_size: sorted_token_ids[...] = flat entry index (padding and unused tail = numel),
// expert_ids[b] = expert of block b (-1 past the last used block), *num_tokens_post_pad = total.
// Entries outside [0, num_experts) are skipped (expert parallelism). Entries keep their order
// within an expert. Capacities: sorted_len >= numel + min(num_experts, numel) * (block_size - 1),
// expert_len >= ceil(that / block_size).
void moe_align_block_size(const void* topk_ids, IndexType id_type, int64_t numel, int64_t num_experts,
                          int64_t block_size, int32_t* sorted_token_ids, int64_t sorted_len, int32_t* expert_ids,
                          int64_t expert_len, int32_t* num_tokens_post_pad);

// output[t, :] = sum_k input[t, k, :], accumulated in float.
void moe_sum(const void* input, void* output, int64_t num_tokens, int64_t topk, int64_t hidden, DType dtype);

}  // namespace kernloop::moe::cpu
