// CUDA silu_and_mul (torch-free): one block per token, 16-byte loads of both halves when the
// width and alignment allow, silu in float.
#include "common/cuda_utils.cuh"
#include "cuda_kernels.h"

namespace kernloop::cuda {
namespace {

using namespace kernloop::cuda_utils;

constexpr int kMaxThreads = 1024;  // the launcher's widest block

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

template <typename T, int VEC>
__global__ void __launch_bounds__(kMaxThreads)
    silu_and_mul_kernel(T* __restrict__ out, const T* __restrict__ input, int d) {
  using V = Vec<T, VEC>;
  const int nvec = d / VEC;
  const int64_t token = blockIdx.x;
  const V* x = reinterpret_cast<const V*>(input + token * 2 * d);
  const V* y = reinterpret_cast<const V*>(input + token * 2 * d + d);
  V* o = reinterpret_cast<V*>(out + token * d);
  for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
    const V a = x[i];
    const V b = y[i];
    V r;
#pragma unroll
    for (int j = 0; j < VEC; ++j) r.v[j] = from_float<T>(round_to<T>(silu(to_float(a.v[j]))) * to_float(b.v[j]));
    o[i] = r;
  }
}

}  // namespace

cudaError_t silu_and_mul(void* out, const void* input, int64_t num_tokens, int64_t d, DType dtype,
                         cudaStream_t stream) {
  if (num_tokens == 0 || d == 0) return cudaSuccess;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int kV = kVec16<T>;
    const bool vec_ok = d % kV == 0 && is_aligned(input, 16) && is_aligned(out, 16);
    const int64_t nvec = vec_ok ? d / kV : d;
    const unsigned want = round_up_to_warp(nvec);
    const dim3 grid(static_cast<unsigned>(num_tokens));
    const dim3 block(want < static_cast<unsigned>(kMaxThreads) ? want : static_cast<unsigned>(kMaxThreads));
    if (vec_ok) {
      silu_and_mul_kernel<T, kV>
          <<<grid, block, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(input), static_cast<int>(d));
    } else {
      silu_and_mul_kernel<T, 1>
          <<<grid, block, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(input), static_cast<int>(d));
    }
  });
  return cudaGetLastError();
}

}  // namespace kernloop::cuda
