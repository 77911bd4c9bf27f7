// CUDA launchers of the _moe_C module: raw pointers, sizes and a stream, no torch. Semantics as
// in cpu_kernels.h, except that moe_align_block_size's order of entries within one expert's
// group is unspecified on CUDA (atomics, as in vLLM). None synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace kernloop::moe::cuda {

cudaError_t topk_softmax(float* topk_weights, void* topk_ids, IndexType id_type, int32_t* token_expert_indices,
                         const void* gating_output, const float* bias, int64_t num_tokens, int64_t num_experts,
                         int64_t topk, bool renormalize, DType dtype, cudaStream_t stream);

// num_experts <= kMaxAlignExperts (moe/limits.h). workspace: num_experts int32 on the device (per-expert write cursors).
cudaError_t moe_align_block_size(const void* topk_ids, IndexType id_type, int64_t numel, int64_t num_experts,
                                 int64_t block_size, int32_t* sorted_token_ids, int64_t sorted_len,
                                 int32_t* expert_ids, int64_t expert_len, int32_t* num_tokens_post_pad,
                                 int32_t* workspace, cudaStream_t stream);

cudaError_t moe_sum(const void* input, void* output, int64_t num_tokens, int64_t topk, int64_t hidden, DType dtype,
                    cudaStream_t stream);

}  // namespace kernloop::moe::cuda
