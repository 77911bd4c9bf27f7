// CUDA rotary_embedding (torch-free): one block per token; threads stride over
// (head, pair) of query then key, reading the token's cos/sin row once per pair. A position
// outside the cache trips a device-side assert before anything is read from the cache.
#include "common/cuda_utils.cuh"
#include "cuda_kernels.h"

namespace kernloop::cuda {
namespace {

using namespace kernloop::cuda_utils;

constexpr int kMaxThreads = 512;  // the launcher's widest block

template <typename T, bool IS_NEOX>
__device__ __forceinline__ void rotate_pair(T* __restrict__ head, const T* __restrict__ cos_ptr,
                                            const T* __restrict__ sin_ptr, int i, int embed_dim) {
  const int xi = IS_NEOX ? i : 2 * i;
  const int yi = IS_NEOX ? embed_dim + i : 2 * i + 1;
  const float c = to_float(cos_ptr[i]);
  const float s = to_float(sin_ptr[i]);
  const float x = to_float(head[xi]);
  const float y = to_float(head[yi]);
  head[xi] = from_float<T>(x * c - y * s);
  head[yi] = from_float<T>(y * c + x * s);
}

template <typename T, bool IS_NEOX>
__global__ void __launch_bounds__(kMaxThreads)
    rotary_embedding_kernel(const int64_t* __restrict__ positions, T* __restrict__ query, T* __restrict__ key,
                            const T* __restrict__ cos_sin_cache, int64_t max_position, int rot_dim, int num_heads,
                            int num_kv_heads, int64_t query_token_stride, int64_t query_head_stride,
                            int64_t key_token_stride, int64_t key_head_stride) {
  const int64_t token = blockIdx.x;
  const int embed_dim = rot_dim / 2;
  const int64_t pos = positions[token];
  KERNLOOP_KERNEL_ASSERT(pos >= 0 && pos < max_position);
  const T* cos_ptr = cos_sin_cache + pos * rot_dim;
  const T* sin_ptr = cos_ptr + embed_dim;

  const int nq = num_heads * embed_dim;
  T* q = query + token * query_token_stride;
  for (int i = threadIdx.x; i < nq; i += blockDim.x) {
    const int head = i / embed_dim;
    rotate_pair<T, IS_NEOX>(q + head * query_head_stride, cos_ptr, sin_ptr, i % embed_dim, embed_dim);
  }
  if (key != nullptr) {
    const int nk = num_kv_heads * embed_dim;
    T* k = key + token * key_token_stride;
    for (int i = threadIdx.x; i < nk; i += blockDim.x) {
      const int head = i / embed_dim;
      rotate_pair<T, IS_NEOX>(k + head * key_head_stride, cos_ptr, sin_ptr, i % embed_dim, embed_dim);
    }
  }
}

}  // namespace

cudaError_t rotary_embedding(const int64_t* positions, void* query, void* key, const void* cos_sin_cache,
                             int64_t num_tokens, int64_t max_position, int64_t rot_dim, int64_t head_size,
                             int64_t num_heads, int64_t num_kv_heads, int64_t query_token_stride,
                             int64_t query_head_stride, int64_t key_token_stride, int64_t key_head_stride,
                             bool is_neox, DType dtype, cudaStream_t stream) {
  (void)head_size;
  if (num_tokens == 0 || rot_dim == 0) return cudaSuccess;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int64_t pairs = (num_heads > num_kv_heads ? num_heads : num_kv_heads) * (rot_dim / 2);
    const unsigned want = pairs > 0 ? round_up_to_warp(pairs) : 32u;
    const dim3 grid(static_cast<unsigned>(num_tokens));
    const dim3 block(want < static_cast<unsigned>(kMaxThreads) ? want : static_cast<unsigned>(kMaxThreads));
    auto launch = [&](auto kernel) {
      kernel<<<grid, block, 0, stream>>>(positions, static_cast<T*>(query), static_cast<T*>(key),
                                         static_cast<const T*>(cos_sin_cache), max_position,
                                         static_cast<int>(rot_dim),
                                         static_cast<int>(num_heads), static_cast<int>(num_kv_heads),
                                         query_token_stride, query_head_stride, key_token_stride, key_head_stride);
    };
    if (is_neox) {
      launch(rotary_embedding_kernel<T, true>);
    } else {
      launch(rotary_embedding_kernel<T, false>);
    }
  });
  return cudaGetLastError();
}

}  // namespace kernloop::cuda
