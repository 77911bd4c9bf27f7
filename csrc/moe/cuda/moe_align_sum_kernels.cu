// CUDA moe_align_block_size and moe_sum (torch-free).
//
// moe_align_block_size runs two kernels on the caller's stream, no host sync:
//   1. one block: per-expert counts (shared-memory atomics), exclusive scan of the padded counts,
//      expert_ids for every block (binary search over the offsets), padding fill, per-expert
//      write cursors into the workspace;
//   2. a grid over the entries: each takes a slot with atomicAdd on its expert's cursor (so the
//      order within an expert is unspecified, as in vLLM).
// moe_sum: one block per token, 16-byte loads across the hidden size, float accumulation.
#include "common/cuda_utils.cuh"
#include "moe/cuda_kernels.h"

namespace kernloop::moe::cuda {
namespace {

using namespace kernloop::cuda_utils;

constexpr int kAlignThreads = 1024;
constexpr int kScatterThreads = 256;
constexpr int kMaxScatterBlocks = 1024;
constexpr int kMaxSumThreads = 1024;  // moe_sum's widest block

// Exclusive prefix sum of v over the block; *total gets the block sum. One call per kernel.
__device__ int block_exclusive_scan(int v, int* total) {
  __shared__ int warp_totals[32];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  int inclusive = v;
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset <<= 1) {
    const int n = __shfl_up_sync(kFullMask, inclusive, offset);
    if (lane >= offset) inclusive += n;
  }
  if (lane == kWarpSize - 1) warp_totals[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int t = lane < num_warps ? warp_totals[lane] : 0;
#pragma unroll
    for (int offset = 1; offset < kWarpSize; offset <<= 1) {
      const int n = __shfl_up_sync(kFullMask, t, offset);
      if (lane >= offset) t += n;
    }
    warp_totals[lane] = t;  // inclusive prefix over warps
  }
  __syncthreads();
  *total = warp_totals[num_warps - 1];
  return (warp > 0 ? warp_totals[warp - 1] : 0) + inclusive - v;
}

template <typename IdT>
__global__ void __launch_bounds__(kAlignThreads)
    moe_align_kernel(const IdT* __restrict__ topk_ids, int64_t numel, int num_experts, int block_size,
                     int32_t* __restrict__ sorted_token_ids, int64_t sorted_len, int32_t* __restrict__ expert_ids,
                     int64_t expert_len, int32_t* __restrict__ num_tokens_post_pad, int32_t* __restrict__ cursor) {
  extern __shared__ int32_t smem[];
  int32_t* counts = smem;                  // [num_experts]
  int32_t* offsets = smem + num_experts;  // [num_experts + 1]
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) counts[e] = 0;
  for (int64_t i = threadIdx.x; i < sorted_len; i += blockDim.x) sorted_token_ids[i] = static_cast<int32_t>(numel);
  __syncthreads();

  for (int64_t i = threadIdx.x; i < numel; i += blockDim.x) {
    const int64_t e = static_cast<int64_t>(topk_ids[i]);
    if (e >= 0 && e < num_experts) atomicAdd(&counts[e], 1);
  }
  __syncthreads();

  // Each thread owns a contiguous run of experts; scan the per-thread sums of padded counts.
  const int chunk = (num_experts + blockDim.x - 1) / blockDim.x;
  const int begin = min(static_cast<int>(threadIdx.x) * chunk, num_experts);
  const int end = min(begin + chunk, num_experts);
  int local = 0;
  for (int e = begin; e < end; ++e) local += (counts[e] + block_size - 1) / block_size * block_size;
  int total = 0;
  int run = block_exclusive_scan(local, &total);
  for (int e = begin; e < end; ++e) {
    offsets[e] = run;
    cursor[e] = run;
    run += (counts[e] + block_size - 1) / block_size * block_size;
  }
  if (threadIdx.x == 0) {
    offsets[num_experts] = total;
    *num_tokens_post_pad = total;
  }
  __syncthreads();

  // Block b belongs to the last expert whose group starts at or before b * block_size (empty
  // experts share their start with the next one, so "last" skips them).
  const int num_blocks = total / block_size;
  for (int b = threadIdx.x; b < num_blocks; b += blockDim.x) {
    const int pos = b * block_size;
    int lo = 0;
    int hi = num_experts - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (offsets[mid] <= pos) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    expert_ids[b] = lo;
  }
  for (int64_t b = num_blocks + threadIdx.x; b < expert_len; b += blockDim.x) expert_ids[b] = -1;
}

template <typename IdT>
__global__ void __launch_bounds__(kScatterThreads)
    moe_scatter_kernel(const IdT* __restrict__ topk_ids, int64_t numel, int num_experts, int32_t* __restrict__ cursor,
                       int32_t* __restrict__ sorted_token_ids) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t e = static_cast<int64_t>(topk_ids[i]);
    if (e >= 0 && e < num_experts) sorted_token_ids[atomicAdd(&cursor[e], 1)] = static_cast<int32_t>(i);
  }
}

template <typename IdT>
void launch_align(const IdT* ids, int64_t numel, int num_experts, int block_size, int32_t* sorted, int64_t sorted_len,
                  int32_t* expert_ids, int64_t expert_len, int32_t* total, int32_t* cursor, cudaStream_t stream) {
  const size_t smem = (2 * static_cast<size_t>(num_experts) + 1) * sizeof(int32_t);
  moe_align_kernel<IdT><<<1, kAlignThreads, smem, stream>>>(ids, numel, num_experts, block_size, sorted, sorted_len,
                                                            expert_ids, expert_len, total, cursor);
  if (numel == 0) return;
  const int64_t want = (numel + kScatterThreads - 1) / kScatterThreads;
  const unsigned blocks = static_cast<unsigned>(want < kMaxScatterBlocks ? want : kMaxScatterBlocks);
  moe_scatter_kernel<IdT><<<blocks, kScatterThreads, 0, stream>>>(ids, numel, num_experts, cursor, sorted);
}

// __launch_bounds__ matters here: without it moe_sum_kernel<float, 4> took 61 registers on
// sm_75, three short of what a 1024-thread block can have.
template <typename T, int VEC>
__global__ void __launch_bounds__(kMaxSumThreads)
    moe_sum_kernel(const T* __restrict__ input, T* __restrict__ output, int topk, int hidden) {
  using V = Vec<T, VEC>;
  const int nvec = hidden / VEC;
  const int64_t token = blockIdx.x;
  const V* x = reinterpret_cast<const V*>(input + token * topk * hidden);
  V* o = reinterpret_cast<V*>(output + token * hidden);
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    float acc[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) acc[j] = 0.f;
    for (int k = 0; k < topk; ++k) {
      const V v = x[static_cast<int64_t>(k) * nvec + i];
#pragma unroll
      for (int j = 0; j < VEC; ++j) acc[j] += to_float(v.v[j]);
    }
    V r;
#pragma unroll
    for (int j = 0; j < VEC; ++j) r.v[j] = from_float<T>(acc[j]);
    o[i] = r;
  }
}

}  // namespace

cudaError_t moe_align_block_size(const void* topk_ids, IndexType id_type, int64_t numel, int64_t num_experts,
                                 int64_t block_size, int32_t* sorted_token_ids, int64_t sorted_len,
                                 int32_t* expert_ids, int64_t expert_len, int32_t* num_tokens_post_pad,
                                 int32_t* workspace, cudaStream_t stream) {
  const int e = static_cast<int>(num_experts);
  const int bs = static_cast<int>(block_size);
  if (id_type == IndexType::kInt32) {
    launch_align(static_cast<const int32_t*>(topk_ids), numel, e, bs, sorted_token_ids, sorted_len, expert_ids,
                 expert_len, num_tokens_post_pad, workspace, stream);
  } else {
    launch_align(static_cast<const int64_t*>(topk_ids), numel, e, bs, sorted_token_ids, sorted_len, expert_ids,
                 expert_len, num_tokens_post_pad, workspace, stream);
  }
  return cudaGetLastError();
}

cudaError_t moe_sum(const void* input, void* output, int64_t num_tokens, int64_t topk, int64_t hidden, DType dtype,
                    cudaStream_t stream) {
  if (num_tokens == 0 || hidden == 0) return cudaSuccess;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kV = kVec16<T>;
    const bool vec_ok = hidden % kV == 0 && is_aligned(input, 16) && is_aligned(output, 16);
    const int64_t nvec = vec_ok ? hidden / kV : hidden;
    const unsigned want = round_up_to_warp(nvec);
    const dim3 grid(static_cast<unsigned>(num_tokens));
    const dim3 block(want < static_cast<unsigned>(kMaxSumThreads) ? want : static_cast<unsigned>(kMaxSumThreads));
    if (vec_ok) {
      moe_sum_kernel<T, kV><<<grid, block, 0, stream>>>(static_cast<const T*>(input), static_cast<T*>(output),
                                                        static_cast<int>(topk), static_cast<int>(hidden));
    } else {
      moe_sum_kernel<T, 1><<<grid, block, 0, stream>>>(static_cast<const T*>(input), static_cast<T*>(output),
                                                       static_cast<int>(topk), static_cast<int>(hidden));
    }
  });
  return cudaGetLastError();
}

}  // namespace kernloop::moe::cuda
