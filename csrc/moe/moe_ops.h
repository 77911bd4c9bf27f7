// The _moe_C ops as torch sees them (registered in torch_bindings.cpp, implemented in
// moe_ops.cpp). Schemas and semantics follow vLLM's ops of the same names.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace kernloop::moe::ops {

void topk_softmax(at::Tensor& topk_weights, at::Tensor& topk_ids, at::Tensor& token_expert_indices,
                  const at::Tensor& gating_output, bool renormalize, const std::optional<at::Tensor>& bias);

void moe_align_block_size(const at::Tensor& topk_ids, int64_t num_experts, int64_t block_size,
                          at::Tensor& sorted_token_ids, at::Tensor& expert_ids, at::Tensor& num_tokens_post_pad);

void moe_sum(const at::Tensor& input, at::Tensor& output);

}  // namespace kernloop::moe::ops
