// Torch-free device helpers shared by the CUDA kernels: float conversions for fp32/fp16/bf16,
// 16-byte vector types, warp and block reductions, dtype dispatch, a device-side assert.
#pragma once

#include <assert.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "common/dtype.h"

// glibc's <assert.h> leaves __assert_fail undeclared under NDEBUG; CUDA implements it on the
// device. Declared here as crt/common_functions.h does.
extern "C" __host__ __device__ void __assert_fail(const char*, const char*, unsigned int, const char*) noexcept;

// Device-side check that survives -DNDEBUG (as torch's CUDA_KERNEL_ASSERT): a failed condition
// stops the kernel with "device-side assert triggered" (cudaErrorAssert, reported by the next
// synchronizing call), instead of reading or writing out of bounds. No host sync is involved.
#define KERNLOOP_KERNEL_ASSERT(cond)                                                   \
  do {                                                                                 \
    if (!(cond)) __assert_fail(#cond, __FILE__, static_cast<unsigned>(__LINE__), __func__); \
  } while (0)

namespace kernloop::cuda_utils {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// The value a T would hold (rounding to T's precision), as float.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// N elements loaded/stored as one instruction; sizeof == alignment == N * sizeof(T).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Elements per 16-byte access.
template <typename T>
constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

__host__ __device__ inline bool is_aligned(const void* p, int bytes) {
  return (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes)) == 0;
}

__device__ __forceinline__ float warp_reduce_sum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_reduce_max(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over the block, returned to every thread. blockDim.x must be a multiple of 32 (the
// launchers round up). Two __syncthreads; safe to call repeatedly in one kernel.
__device__ __forceinline__ float block_reduce_sum(float v) {
  __shared__ float warp_sums[32];
  __shared__ float total;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  v = warp_reduce_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int num_warps = blockDim.x / kWarpSize;
    v = lane < num_warps ? warp_sums[lane] : 0.f;
    v = warp_reduce_sum(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

// Max over the block, returned to every thread (same contract as block_reduce_sum).
__device__ __forceinline__ float block_reduce_max(float v) {
  __shared__ float warp_maxes[32];
  __shared__ float total;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  v = warp_reduce_max(v);
  if (lane == 0) warp_maxes[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int num_warps = blockDim.x / kWarpSize;
    v = lane < num_warps ? warp_maxes[lane] : -INFINITY;
    v = warp_reduce_max(v);
    if (lane == 0) total = v;
  }
  __syncthreads();
  return total;
}

inline unsigned round_up_to_warp(long long n) {
  return static_cast<unsigned>(((n + kWarpSize - 1) / kWarpSize) * kWarpSize);
}

// Calls fn(T{}) with T = float, __half or __nv_bfloat16 for dtype (host side).
template <typename Fn>
inline void dispatch_float_types(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      std::forward<Fn>(fn)(float{});
      return;
    case DType::kFloat16:
      std::forward<Fn>(fn)(__half{});
      return;
    case DType::kBFloat16:
      std::forward<Fn>(fn)(__nv_bfloat16{});
      return;
  }
}

}  // namespace kernloop::cuda_utils
