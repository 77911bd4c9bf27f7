// vLLM-style silu_and_mul, for the benchmarks only (bench/variants/vllm_style.py copies it over
// csrc/cuda/activation_kernels.cu in a temporary copy of the tree; it never goes into csrc/).
// The same kernel as csrc/cuda/activation_kernels.cu, written the way vLLM's csrc/activation_kernels.cu
// is: torch headers in the .cu, a launcher that takes torch tensors, AT_DISPATCH for the dtype and
// torch's current stream. Those headers are what makes this TU slow and large to compile.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/all.h>

#include <algorithm>
#include <cmath>

namespace kernloop::vllm_style {
namespace {

template <typename T>
__device__ __forceinline__ T silu_kernel(const T& x) {
  // x * sigmoid(x), in float, rounded to T (as the torch-free kernel does)
  return (T)(((float)x) / (1.0f + expf((float)-x)));
}

template <typename scalar_t>
__global__ void act_and_mul_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ input, const int d) {
  const int64_t token_idx = blockIdx.x;
  for (int64_t idx = threadIdx.x; idx < d; idx += blockDim.x) {
    const scalar_t x = __ldg(&input[token_idx * 2 * d + idx]);
    const scalar_t y = __ldg(&input[token_idx * 2 * d + d + idx]);
    out[token_idx * d + idx] = (scalar_t)((float)silu_kernel<scalar_t>(x) * (float)y);
  }
}

}  // namespace

void silu_and_mul(at::Tensor& out, const at::Tensor& input) {
  const int d = static_cast<int>(input.size(-1) / 2);
  const int64_t num_tokens = d == 0 ? 0 : input.numel() / input.size(-1);
  if (num_tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(num_tokens));
  const dim3 block(std::min(d, 1024));
  const at::cuda::OptionalCUDAGuard device_guard(device_of(input));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, input.scalar_type(),
                                  "act_and_mul_kernel", [&] {
                                    act_and_mul_kernel<scalar_t><<<grid, block, 0, stream>>>(
                                        out.data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(), d);
                                  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace kernloop::vllm_style
