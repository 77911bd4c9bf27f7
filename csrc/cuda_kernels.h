// CUDA launchers of the _C module: raw pointers, sizes and a stream, no torch (see
// cpu_kernels.h for the semantics, which are the same). Each returns the launch status; none
// synchronizes.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/dtype.h"

namespace kernloop::cuda {

cudaError_t rms_norm(void* out, const void* input, const void* weight, float eps, int64_t num_tokens,
                     int64_t hidden, int64_t input_stride, DType dtype, cudaStream_t stream);

cudaError_t fused_add_rms_norm(void* input, void* residual, const void* weight, float eps, int64_t num_tokens,
                               int64_t hidden, int64_t input_stride, DType dtype, cudaStream_t stream);

cudaError_t silu_and_mul(void* out, const void* input, int64_t num_tokens, int64_t d, DType dtype,
                         cudaStream_t stream);

// A position outside [0, max_position) stops the kernel with a device-side assert (the error
// surfaces at the next synchronizing call, as torch's own index checks do); nothing is read
// past the cache. No host sync.
cudaError_t rotary_embedding(const int64_t* positions, void* query, void* key, const void* cos_sin_cache,
                             int64_t num_tokens, int64_t max_position, int64_t rot_dim, int64_t head_size,
                             int64_t num_heads, int64_t num_kv_heads, int64_t query_token_stride,
                             int64_t query_head_stride, int64_t key_token_stride, int64_t key_head_stride,
                             bool is_neox, DType dtype, cudaStream_t stream);

}  // namespace kernloop::cuda
