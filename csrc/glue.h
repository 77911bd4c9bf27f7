// Shared by the glue TUs (ops.cpp, moe/moe_ops.cpp): argument checks that turn a bad call into a
// Python exception (TORCH_CHECK -> RuntimeError), the at::ScalarType -> DType mapping, and the
// CUDA device guard + current stream. Light headers only: ATen/core/Tensor.h and c10/cuda.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

#include "common/dtype.h"

#if KERNLOOP_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace kernloop::glue {

inline DType float_dtype(const char* op, const char* name, const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::ScalarType::Float:
      return DType::kFloat32;
    case at::ScalarType::Half:
      return DType::kFloat16;
    case at::ScalarType::BFloat16:
      return DType::kBFloat16;
    default:
      break;
  }
  TORCH_CHECK(false, op, ": ", name, " must be float32, float16 or bfloat16, got ", t.scalar_type());
}

inline IndexType index_type(const char* op, const char* name, const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::ScalarType::Int:
      return IndexType::kInt32;
    case at::ScalarType::Long:
      return IndexType::kInt64;
    default:
      break;
  }
  TORCH_CHECK(false, op, ": ", name, " must be int32 or int64, got ", t.scalar_type());
}

inline void check_dtype(const char* op, const char* name, const at::Tensor& t, at::ScalarType want) {
  TORCH_CHECK(t.scalar_type() == want, op, ": ", name, " must be ", want, ", got ", t.scalar_type());
}

inline void check_same_dtype(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                             const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " (", t.scalar_type(), ") must have the dtype of ",
              ref_name, " (", ref.scalar_type(), ")");
}

inline void check_same_device(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                              const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name, " is on ",
              ref.device());
}

inline void check_contiguous(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous (call .contiguous() first)");
}

inline void check_fits_int(const char* op, const char* what, int64_t v) {
  TORCH_CHECK(v <= std::numeric_limits<int32_t>::max(), op, ": ", what, " = ", v, " is too large (limit 2^31-1)");
}

// Reached for a CUDA tensor in a build without CUDA kernels (the dispatcher normally stops such
// calls first) or for any other device.
inline void require_cpu(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.is_cpu(), op, ": tensors on ", t.device(),
              " are not supported by this build of kernloop (CPU",
              KERNLOOP_WITH_CUDA ? " and CUDA" : " only; rebuild with CUDA: bash tools/setup.sh", ")");
}

#if KERNLOOP_WITH_CUDA
// Launch context for tensors on one CUDA device: makes that device current for the scope and
// hands out torch's current stream on it (so kernels order with the caller's work).
class CudaContext {
 public:
  explicit CudaContext(const at::Tensor& t)
      : guard_(t.device()), stream_(c10::cuda::getCurrentCUDAStream(t.get_device()).stream()) {}
  cudaStream_t stream() const { return stream_; }

 private:
  c10::cuda::CUDAGuard guard_;
  cudaStream_t stream_;
};

inline void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}
#endif

}  // namespace kernloop::glue
