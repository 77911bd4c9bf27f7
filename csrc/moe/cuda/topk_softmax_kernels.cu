// CUDA topk_softmax (torch-free).
//
// Softmax is monotonic, so the top k by weight are the top k logits: no softmax buffer is
// written. Round j picks the best logit ranked strictly below pick j-1 in (value desc,
// index asc) order, which also breaks ties toward the lower expert index without any
// "already taken" bookkeeping.
//   - num_experts <= 512: one warp per token, the row lives in registers (coalesced loads:
//     lane l holds experts l, l+32, ...), reductions are shuffles only.
//   - larger: one block per token, each round re-reads the row (L1/L2-resident).
#include <climits>

#include "common/cuda_utils.cuh"
#include "moe/cuda_kernels.h"

namespace kernloop::moe::cuda {
namespace {

using namespace kernloop::cuda_utils;

constexpr int kWarpsPerBlock = 4;
constexpr int kBlockThreads = 256;

__device__ __forceinline__ bool ranks_before(float v, int i, float best_v, int best_i) {
  return v > best_v || (v == best_v && i < best_i);
}

__device__ __forceinline__ bool eligible(float v, int i, float prev_v, int prev_i) {
  return v < prev_v || (v == prev_v && i > prev_i);
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, v, offset);
    const int oi = __shfl_xor_sync(kFullMask, i, offset);
    if (ranks_before(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

template <typename IdT>
__device__ __forceinline__ void write_pick(float* weights, IdT* ids, int32_t* src, int64_t token, int j, int k,
                                           int64_t num_tokens, float best_v, int best_i, float max_v, float inv_sum) {
  const bool found = best_i != INT_MAX;  // false only when the remaining logits are NaN
  const int64_t o = token * k + j;
  weights[o] = found ? expf(best_v - max_v) * inv_sum : 0.f;
  ids[o] = static_cast<IdT>(found ? best_i : 0);
  src[o] = static_cast<int32_t>(j * num_tokens + token);
}

template <typename T, typename IdT, int VPT>
__global__ void topk_softmax_warp_kernel(const T* __restrict__ gating, float* __restrict__ weights,
                                         IdT* __restrict__ ids, int32_t* __restrict__ src, int64_t num_tokens,
                                         int num_experts, int k) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t token = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (token >= num_tokens) return;  // whole warps leave; no block-level sync below
  const T* g = gating + token * num_experts;

  float x[VPT];
  float max_v = -INFINITY;
#pragma unroll
  for (int r = 0; r < VPT; ++r) {
    const int e = lane + r * kWarpSize;
    x[r] = e < num_experts ? to_float(g[e]) : -INFINITY;
    max_v = fmaxf(max_v, x[r]);
  }
  max_v = warp_reduce_max(max_v);
  float sum = 0.f;
#pragma unroll
  for (int r = 0; r < VPT; ++r) {
    const int e = lane + r * kWarpSize;
    if (e < num_experts) sum += expf(x[r] - max_v);
  }
  const float inv_sum = 1.f / warp_reduce_sum(sum);

  float prev_v = INFINITY;
  int prev_i = -1;
  for (int j = 0; j < k; ++j) {
    float best_v = -INFINITY;
    int best_i = INT_MAX;
#pragma unroll
    for (int r = 0; r < VPT; ++r) {
      const int e = lane + r * kWarpSize;
      if (e < num_experts && eligible(x[r], e, prev_v, prev_i) && ranks_before(x[r], e, best_v, best_i)) {
        best_v = x[r];
        best_i = e;
      }
    }
    warp_argmax(best_v, best_i);
    if (lane == 0) write_pick(weights, ids, src, token, j, k, num_tokens, best_v, best_i, max_v, inv_sum);
    prev_v = best_v;
    prev_i = best_i;
  }
}

template <typename T, typename IdT>
__global__ void topk_softmax_block_kernel(const T* __restrict__ gating, float* __restrict__ weights,
                                          IdT* __restrict__ ids, int32_t* __restrict__ src, int64_t num_tokens,
                                          int num_experts, int k) {
  __shared__ float pick_v[32];
  __shared__ int pick_i[32];
  const int64_t token = blockIdx.x;
  const T* g = gating + token * num_experts;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;

  float max_v = -INFINITY;
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) max_v = fmaxf(max_v, to_float(g[e]));
  max_v = block_reduce_max(max_v);
  float sum = 0.f;
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) sum += expf(to_float(g[e]) - max_v);
  const float inv_sum = 1.f / block_reduce_sum(sum);

  float prev_v = INFINITY;
  int prev_i = -1;
  for (int j = 0; j < k; ++j) {
    float best_v = -INFINITY;
    int best_i = INT_MAX;
    for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
      const float v = to_float(g[e]);
      if (eligible(v, e, prev_v, prev_i) && ranks_before(v, e, best_v, best_i)) {
        best_v = v;
        best_i = e;
      }
    }
    warp_argmax(best_v, best_i);
    if (lane == 0) {
      pick_v[warp] = best_v;
      pick_i[warp] = best_i;
    }
    __syncthreads();
    best_v = lane < num_warps ? pick_v[lane] : -INFINITY;
    best_i = lane < num_warps ? pick_i[lane] : INT_MAX;
    warp_argmax(best_v, best_i);  // every warp reduces the same values: all threads agree
    if (threadIdx.x == 0) write_pick(weights, ids, src, token, j, k, num_tokens, best_v, best_i, max_v, inv_sum);
    prev_v = best_v;
    prev_i = best_i;
    __syncthreads();  // pick_* is rewritten next round
  }
}

template <typename T, typename IdT>
void launch(float* weights, IdT* ids, int32_t* src, const T* gating, int64_t num_tokens, int num_experts, int k,
            cudaStream_t stream) {
  const dim3 warp_grid(static_cast<unsigned>((num_tokens + kWarpsPerBlock - 1) / kWarpsPerBlock));
  const dim3 warp_block(kWarpsPerBlock * kWarpSize);
  const int vpt = (num_experts + kWarpSize - 1) / kWarpSize;
#define KERNLOOP_TOPK_WARP(VPT)                                                                            \
  topk_softmax_warp_kernel<T, IdT, VPT>                                                                     \
      <<<warp_grid, warp_block, 0, stream>>>(gating, weights, ids, src, num_tokens, num_experts, k)
  if (vpt <= 1) {
    KERNLOOP_TOPK_WARP(1);
  } else if (vpt <= 2) {
    KERNLOOP_TOPK_WARP(2);
  } else if (vpt <= 4) {
    KERNLOOP_TOPK_WARP(4);
  } else if (vpt <= 8) {
    KERNLOOP_TOPK_WARP(8);
  } else if (vpt <= 16) {
    KERNLOOP_TOPK_WARP(16);
  } else {
    topk_softmax_block_kernel<T, IdT><<<static_cast<unsigned>(num_tokens), kBlockThreads, 0, stream>>>(
        gating, weights, ids, src, num_tokens, num_experts, k);
  }
#undef KERNLOOP_TOPK_WARP
}

}  // namespace

cudaError_t topk_softmax(float* topk_weights, void* topk_ids, IndexType id_type, int32_t* token_expert_indices,
                         const void* gating_output, int64_t num_tokens, int64_t num_experts, int64_t topk,
                         DType dtype, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(gating_output);
    if (id_type == IndexType::kInt32) {
      launch(topk_weights, static_cast<int32_t*>(topk_ids), token_expert_indices, g, num_tokens,
             static_cast<int>(num_experts), static_cast<int>(topk), stream);
    } else {
      launch(topk_weights, static_cast<int64_t*>(topk_ids), token_expert_indices, g, num_tokens,
             static_cast<int>(num_experts), static_cast<int>(topk), stream);
    }
  });
  return cudaGetLastError();
}

}  // namespace kernloop::moe::cuda
