// CPU kernels of the _C module: raw pointers and sizes, no torch. The glue (ops.cpp) checks
// the tensors first, so these trust their arguments. Element type per DType; math in float.
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace kernloop::cpu {

// out[t, :] = round(x * rsqrt(mean(x^2) + eps)) * weight, x = input row t (row t starts
// t * input_stride elements after row 0; rows may overlap, they are only read). out is
// contiguous [num_tokens, hidden]; it is either input itself (in place) or disjoint from it.
void rms_norm(void* out, const void* input, const void* weight, float eps, int64_t num_tokens, int64_t hidden,
              int64_t input_stride, DType dtype);

// In place: residual = input + residual; input = rms_norm(residual) * weight. Row t of input
// starts t * input_stride elements after row 0 (input_stride >= hidden: rows do not overlap);
// residual is contiguous; the two are disjoint.
void fused_add_rms_norm(void* input, void* residual, const void* weight, float eps, int64_t num_tokens,
                        int64_t hidden, int64_t input_stride, DType dtype);

// out[t, :d] = silu(input[t, :d]) * input[t, d:2d]; both contiguous.
void silu_and_mul(void* out, const void* input, int64_t num_tokens, int64_t d, DType dtype);

// Rotates the first rot_dim elements of every head of query (and key, if not null) in place by
// the cos/sin at each token's position (cache row: rot_dim/2 cos then rot_dim/2 sin).
// Returns -1, or the index of the first token whose position is outside [0, max_position).
int64_t rotary_embedding(const int64_t* positions, void* query, void* key, const void* cos_sin_cache,
                         int64_t num_tokens, int64_t max_position, int64_t rot_dim, int64_t head_size,
                         int64_t num_heads, int64_t num_kv_heads, int64_t query_token_stride,
                         int64_t query_head_stride, int64_t key_token_stride, int64_t key_head_stride,
                         bool is_neox, DType dtype);

}  // namespace kernloop::cpu
