// CUDA topk_softmax (torch-free); the semantics are those of moe/cpu_kernels.h.
//
// Every path computes the float32 probabilities p = exp(x - max) * (1 / sum) as the CPU kernel
// does and ranks score = p + bias by the same strict order (higher first, NaN after every
// number, ties to the lower expert index). Round j takes the best entry ranked strictly after
// pick j - 1, so no "already taken" bookkeeping is needed and ties resolve exactly.
//   - num_experts <= 512, "row groups": a row lives in the registers of a group of TPR lanes
//     (TPR = 1..32, so one warp holds 32 / TPR rows -- 16 rows of 8 fp32 experts, 4 rows of 32
//     bf16 experts); each lane holds VPT experts read as 16-byte (or narrower) vectors when the
//     row's size and alignment allow, scalars otherwise; reductions are shuffles in the group.
//   - larger: one block of 256 threads per row; each round re-reads the row (L1/L2-resident).
#include <climits>

#include "common/cuda_utils.cuh"
#include "moe/cuda_kernels.h"

namespace kernloop::moe::cuda {
namespace {

using namespace kernloop::cuda_utils;

constexpr int kGroupWarps = 4;  // warps per block of the row-group kernel
constexpr int kGroupThreads = kGroupWarps * kWarpSize;
constexpr int kBlockThreads = 256;  // the one-row-per-block kernel
constexpr int kMaxGroupExperts = 512;

// (s, i) ranks before (s2, i2). (NaN, INT_MAX) ranks after every real entry: "none yet";
// (+inf, -1) before every real entry: "nothing picked yet".
__device__ __forceinline__ bool ranks_before(float s, int i, float s2, int i2) {
  const bool nan = isnan(s);
  const bool nan2 = isnan(s2);
  if (nan != nan2) return nan2;
  if (!nan && s != s2) return s > s2;
  return i < i2;
}

// Best (score, expert, p) over WIDTH consecutive lanes; every lane of the group gets it.
template <int WIDTH>
__device__ __forceinline__ void group_argmax(float& s, int& i, float& p) {
#pragma unroll
  for (int offset = WIDTH / 2; offset > 0; offset >>= 1) {
    const float os = __shfl_xor_sync(kFullMask, s, offset, WIDTH);
    const int oi = __shfl_xor_sync(kFullMask, i, offset, WIDTH);
    const float op = __shfl_xor_sync(kFullMask, p, offset, WIDTH);
    if (ranks_before(os, oi, s, i)) {
      s = os;
      i = oi;
      p = op;
    }
  }
}

template <int WIDTH>
__device__ __forceinline__ float group_max(float v) {
#pragma unroll
  for (int offset = WIDTH / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset, WIDTH));
  return v;
}

template <int WIDTH>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int offset = WIDTH / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset, WIDTH);
  return v;
}

__device__ __forceinline__ void write_pick(float* weights, void* ids, bool ids64, int32_t* src, int64_t token,
                                           int j, int k, int64_t num_tokens, float p, int expert) {
  const int64_t o = token * k + j;
  weights[o] = p;
  if (ids64) {
    static_cast<int64_t*>(ids)[o] = expert;
  } else {
    static_cast<int32_t*>(ids)[o] = expert;
  }
  src[o] = static_cast<int32_t>(j * num_tokens + token);
}

// The thread that wrote a row's k weights rescales them (it reads its own writes).
__device__ __forceinline__ void renormalize_row(float* weights, int64_t token, int k, float picked) {
  const float denom = picked > 0.f ? picked : 1.f;
  for (int j = 0; j < k; ++j) weights[token * k + j] /= denom;
}

// Layout of one row of EP experts (num_experts rounded up to a power of two, 4..512) over
// its lanes: lane g of the group holds slots (l, v) = column (l * kTpr + g) * kVec + v.
template <typename T, int EP>
struct RowGroup {
  static constexpr int kVec = EP < kVec16<T> ? EP : kVec16<T>;                // elements per load
  static constexpr int kTpr = EP / kVec < kWarpSize ? EP / kVec : kWarpSize;  // lanes per row
  static constexpr int kVpt = EP / kTpr;                                      // experts per lane
  static constexpr int kLoads = kVpt / kVec;
  static constexpr int kRowsPerBlock = kGroupWarps * (kWarpSize / kTpr);
  static_assert(kVpt % kVec == 0 && kWarpSize % kTpr == 0, "row group layout");
};

template <typename T, int EP>
__global__ void __launch_bounds__(kGroupThreads)
    topk_softmax_group_kernel(const T* __restrict__ gating, const float* __restrict__ bias,
                              float* __restrict__ weights, void* __restrict__ ids, bool ids64,
                              int32_t* __restrict__ src, int64_t num_tokens, int num_experts, int k,
                              bool renormalize, bool vec_ok) {
  using G = RowGroup<T, EP>;
  const int lane = threadIdx.x % kWarpSize;
  const int g = lane % G::kTpr;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kGroupWarps + threadIdx.x / kWarpSize;
  const int64_t row = warp * (kWarpSize / G::kTpr) + lane / G::kTpr;
  // No early return for rows past the end: every lane takes part in the shuffles.
  const bool active = row < num_tokens;
  const T* x = gating + (active ? row : 0) * num_experts;

  float p[G::kVpt];
  float s[G::kVpt];
#pragma unroll
  for (int l = 0; l < G::kLoads; ++l) {
    const int c0 = (l * G::kTpr + g) * G::kVec;
    if (vec_ok && active && c0 < num_experts) {  // vec_ok: num_experts % kVec == 0, aligned rows
      const Vec<T, G::kVec> v = *reinterpret_cast<const Vec<T, G::kVec>*>(x + c0);
#pragma unroll
      for (int j = 0; j < G::kVec; ++j) p[l * G::kVec + j] = to_float(v.v[j]);
    } else {
#pragma unroll
      for (int j = 0; j < G::kVec; ++j) p[l * G::kVec + j] = active && c0 + j < num_experts ? to_float(x[c0 + j]) : 0.f;
    }
  }
  auto column = [&](int slot) { return ((slot / G::kVec) * G::kTpr + g) * G::kVec + slot % G::kVec; };
  auto valid = [&](int slot) { return active && column(slot) < num_experts; };

  float max_v = -INFINITY;
#pragma unroll
  for (int r = 0; r < G::kVpt; ++r) {
    if (valid(r)) max_v = fmaxf(max_v, p[r]);  // NaN logits are skipped here and make the sum NaN
  }
  max_v = group_max<G::kTpr>(max_v);
  float sum = 0.f;
#pragma unroll
  for (int r = 0; r < G::kVpt; ++r) {
    if (valid(r)) {
      p[r] = expf(p[r] - max_v);
      sum += p[r];
    }
  }
  const float inv_sum = 1.f / group_sum<G::kTpr>(sum);
#pragma unroll
  for (int r = 0; r < G::kVpt; ++r) {
    if (valid(r)) {
      p[r] *= inv_sum;
      s[r] = bias != nullptr ? p[r] + bias[column(r)] : p[r];
    }
  }

  float prev_s = INFINITY;
  int prev_i = -1;
  float picked = 0.f;
  for (int j = 0; j < k; ++j) {
    float best_s = NAN;
    int best_i = INT_MAX;
    float best_p = 0.f;
#pragma unroll
    for (int r = 0; r < G::kVpt; ++r) {
      const int c = column(r);
      if (valid(r) && ranks_before(prev_s, prev_i, s[r], c) && ranks_before(s[r], c, best_s, best_i)) {
        best_s = s[r];
        best_i = c;
        best_p = p[r];
      }
    }
    group_argmax<G::kTpr>(best_s, best_i, best_p);
    if (active && g == 0) {
      write_pick(weights, ids, ids64, src, row, j, k, num_tokens, best_p, best_i);
      picked += best_p;
    }
    prev_s = best_s;
    prev_i = best_i;
  }
  if (renormalize && active && g == 0) renormalize_row(weights, row, k, picked);
}

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    topk_softmax_block_kernel(const T* __restrict__ gating, const float* __restrict__ bias,
                              float* __restrict__ weights, void* __restrict__ ids, bool ids64,
                              int32_t* __restrict__ src, int64_t num_tokens, int num_experts, int k,
                              bool renormalize) {
  constexpr int kWarps = kBlockThreads / kWarpSize;
  __shared__ float pick_s[kWarps];
  __shared__ int pick_i[kWarps];
  __shared__ float pick_p[kWarps];
  const int64_t token = blockIdx.x;
  const T* x = gating + token * num_experts;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;

  float max_v = -INFINITY;
  for (int e = threadIdx.x; e < num_experts; e += kBlockThreads) max_v = fmaxf(max_v, to_float(x[e]));
  max_v = block_reduce_max(max_v);
  float sum = 0.f;
  for (int e = threadIdx.x; e < num_experts; e += kBlockThreads) sum += expf(to_float(x[e]) - max_v);
  const float inv_sum = 1.f / block_reduce_sum(sum);

  float prev_s = INFINITY;
  int prev_i = -1;
  float picked = 0.f;
  for (int j = 0; j < k; ++j) {
    float best_s = NAN;
    int best_i = INT_MAX;
    float best_p = 0.f;
    for (int e = threadIdx.x; e < num_experts; e += kBlockThreads) {
      const float p = expf(to_float(x[e]) - max_v) * inv_sum;
      const float s = bias != nullptr ? p + bias[e] : p;
      if (ranks_before(prev_s, prev_i, s, e) && ranks_before(s, e, best_s, best_i)) {
        best_s = s;
        best_i = e;
        best_p = p;
      }
    }
    group_argmax<kWarpSize>(best_s, best_i, best_p);
    if (lane == 0) {
      pick_s[warp] = best_s;
      pick_i[warp] = best_i;
      pick_p[warp] = best_p;
    }
    __syncthreads();
    best_s = lane < kWarps ? pick_s[lane] : NAN;
    best_i = lane < kWarps ? pick_i[lane] : INT_MAX;
    best_p = lane < kWarps ? pick_p[lane] : 0.f;
    group_argmax<kWarpSize>(best_s, best_i, best_p);  // every warp reduces the same values: all agree
    if (threadIdx.x == 0) {
      write_pick(weights, ids, ids64, src, token, j, k, num_tokens, best_p, best_i);
      picked += best_p;
    }
    prev_s = best_s;
    prev_i = best_i;
    __syncthreads();  // pick_* is rewritten next round
  }
  if (renormalize && threadIdx.x == 0) renormalize_row(weights, token, k, picked);
}

template <typename T, int EP>
void launch_group(float* weights, void* ids, bool ids64, int32_t* src, const T* gating, const float* bias,
                  int64_t num_tokens, int num_experts, int k, bool renormalize, cudaStream_t stream) {
  using G = RowGroup<T, EP>;
  const bool vec_ok = num_experts % G::kVec == 0 && is_aligned(gating, G::kVec * static_cast<int>(sizeof(T)));
  const dim3 grid(static_cast<unsigned>((num_tokens + G::kRowsPerBlock - 1) / G::kRowsPerBlock));
  topk_softmax_group_kernel<T, EP><<<grid, kGroupThreads, 0, stream>>>(gating, bias, weights, ids, ids64, src,
                                                                       num_tokens, num_experts, k, renormalize, vec_ok);
}

template <typename T>
void launch(float* weights, void* ids, bool ids64, int32_t* src, const T* gating, const float* bias,
            int64_t num_tokens, int num_experts, int k, bool renormalize, cudaStream_t stream) {
  static_assert(kMaxGroupExperts == 512, "the dispatch below covers 4..512");
#define KERNLOOP_TOPK_GROUP(EP)                                                                                    \
  launch_group<T, EP>(weights, ids, ids64, src, gating, bias, num_tokens, num_experts, k, renormalize, stream)
  if (num_experts <= 4) {
    KERNLOOP_TOPK_GROUP(4);
  } else if (num_experts <= 8) {
    KERNLOOP_TOPK_GROUP(8);
  } else if (num_experts <= 16) {
    KERNLOOP_TOPK_GROUP(16);
  } else if (num_experts <= 32) {
    KERNLOOP_TOPK_GROUP(32);
  } else if (num_experts <= 64) {
    KERNLOOP_TOPK_GROUP(64);
  } else if (num_experts <= 128) {
    KERNLOOP_TOPK_GROUP(128);
  } else if (num_experts <= 256) {
    KERNLOOP_TOPK_GROUP(256);
  } else if (num_experts <= kMaxGroupExperts) {
    KERNLOOP_TOPK_GROUP(512);
  } else {
    topk_softmax_block_kernel<T><<<static_cast<unsigned>(num_tokens), kBlockThreads, 0, stream>>>(
        gating, bias, weights, ids, ids64, src, num_tokens, num_experts, k, renormalize);
  }
#undef KERNLOOP_TOPK_GROUP
}

}  // namespace

cudaError_t topk_softmax(float* topk_weights, void* topk_ids, IndexType id_type, int32_t* token_expert_indices,
                         const void* gating_output, const float* bias, int64_t num_tokens, int64_t num_experts,
                         int64_t topk, bool renormalize, DType dtype, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    launch(topk_weights, topk_ids, id_type == IndexType::kInt64, token_expert_indices,
           static_cast<const T*>(gating_output), bias, num_tokens, static_cast<int>(num_experts),
           static_cast<int>(topk), renormalize, stream);
  });
  return cudaGetLastError();
}

}  // namespace kernloop::moe::cuda
