// CUDA rms_norm / fused_add_rms_norm (torch-free). One block per token: pass 1 reduces the sum of
// squares (16-byte loads when the row allows it, warp shuffles then one shared-memory step),
// pass 2 re-reads the row (L1/L2-resident) and writes the result. Input rows are input_stride
// elements apart (a slice of a wider tensor needs no copy). rms_norm may run in place
// (out == input), hence no __restrict__ on those two.
#include "common/cuda_utils.cuh"
#include "cuda_kernels.h"

namespace kernloop::cuda {
namespace {

using namespace kernloop::cuda_utils;

// The widest block the launchers use (block_size_for); __launch_bounds__ makes the compiler
// keep every kernel within the registers such a block can have.
constexpr int kMaxNormThreads = 1024;

template <typename T, int VEC>
__global__ void __launch_bounds__(kMaxNormThreads)
    rms_norm_kernel(T* out, const T* input, const T* __restrict__ weight, float eps, int hidden,
                    int64_t input_stride) {
  using V = Vec<T, VEC>;
  const int nvec = hidden / VEC;
  const V* x = reinterpret_cast<const V*>(input + static_cast<int64_t>(blockIdx.x) * input_stride);
  const V* w = reinterpret_cast<const V*>(weight);
  V* y = reinterpret_cast<V*>(out + static_cast<int64_t>(blockIdx.x) * hidden);

  float sum_sq = 0.f;
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    const V v = x[i];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float f = to_float(v.v[j]);
      sum_sq += f * f;
    }
  }
  const float inv = rsqrtf(block_reduce_sum(sum_sq) / static_cast<float>(hidden) + eps);

  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    const V v = x[i];
    const V wv = w[i];
    V o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) o.v[j] = from_float<T>(round_to<T>(to_float(v.v[j]) * inv) * to_float(wv.v[j]));
    y[i] = o;
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kMaxNormThreads)
    fused_add_rms_norm_kernel(T* __restrict__ input, T* __restrict__ residual, const T* __restrict__ weight,
                              float eps, int hidden, int64_t input_stride) {
  using V = Vec<T, VEC>;
  const int nvec = hidden / VEC;
  V* x = reinterpret_cast<V*>(input + static_cast<int64_t>(blockIdx.x) * input_stride);
  V* r = reinterpret_cast<V*>(residual + static_cast<int64_t>(blockIdx.x) * hidden);
  const V* w = reinterpret_cast<const V*>(weight);

  float sum_sq = 0.f;
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    const V a = x[i];
    V z = r[i];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      z.v[j] = from_float<T>(to_float(a.v[j]) + to_float(z.v[j]));
      const float f = to_float(z.v[j]);
      sum_sq += f * f;
    }
    r[i] = z;  // re-read below by this same thread: no fence needed
  }
  const float inv = rsqrtf(block_reduce_sum(sum_sq) / static_cast<float>(hidden) + eps);

  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    const V z = r[i];
    const V wv = w[i];
    V o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) o.v[j] = from_float<T>(round_to<T>(to_float(z.v[j]) * inv) * to_float(wv.v[j]));
    x[i] = o;
  }
}

// Few tokens: wide blocks to spread one row over many threads; many tokens: 256 threads so
// several blocks share an SM.
unsigned block_size_for(int64_t num_tokens, int64_t nvec) {
  const unsigned cap = num_tokens < 256 ? static_cast<unsigned>(kMaxNormThreads) : 256u;
  const unsigned want = round_up_to_warp(nvec);
  return want < cap ? want : cap;
}

}  // namespace

cudaError_t rms_norm(void* out, const void* input, const void* weight, float eps, int64_t num_tokens,
                     int64_t hidden, int64_t input_stride, DType dtype, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kV = kVec16<T>;
    const bool vec_ok = hidden % kV == 0 && input_stride % kV == 0 && is_aligned(input, 16) &&
                        is_aligned(out, 16) && is_aligned(weight, 16);
    const int64_t nvec = vec_ok ? hidden / kV : hidden;
    const dim3 grid(static_cast<unsigned>(num_tokens));
    const dim3 block(block_size_for(num_tokens, nvec));
    if (vec_ok) {
      rms_norm_kernel<T, kV><<<grid, block, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(input),
                                                         static_cast<const T*>(weight), eps,
                                                         static_cast<int>(hidden), input_stride);
    } else {
      rms_norm_kernel<T, 1><<<grid, block, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(input),
                                                        static_cast<const T*>(weight), eps,
                                                        static_cast<int>(hidden), input_stride);
    }
  });
  return cudaGetLastError();
}

cudaError_t fused_add_rms_norm(void* input, void* residual, const void* weight, float eps, int64_t num_tokens,
                               int64_t hidden, int64_t input_stride, DType dtype, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kV = kVec16<T>;
    const bool vec_ok = hidden % kV == 0 && input_stride % kV == 0 && is_aligned(input, 16) &&
                        is_aligned(residual, 16) && is_aligned(weight, 16);
    const int64_t nvec = vec_ok ? hidden / kV : hidden;
    const dim3 grid(static_cast<unsigned>(num_tokens));
    const dim3 block(block_size_for(num_tokens, nvec));
    if (vec_ok) {
      fused_add_rms_norm_kernel<T, kV><<<grid, block, 0, stream>>>(
          static_cast<T*>(input), static_cast<T*>(residual), static_cast<const T*>(weight), eps,
          static_cast<int>(hidden), input_stride);
    } else {
      fused_add_rms_norm_kernel<T, 1><<<grid, block, 0, stream>>>(
          static_cast<T*>(input), static_cast<T*>(residual), static_cast<const T*>(weight), eps,
          static_cast<int>(hidden), input_stride);
    }
  });
  return cudaGetLastError();
}

}  // namespace kernloop::cuda
