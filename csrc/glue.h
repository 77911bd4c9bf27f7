// Shared by the glue TUs (ops.cpp, moe/moe_ops.cpp): argument checks that turn a bad call into a
// Python exception (TORCH_CHECK -> RuntimeError), the at::ScalarType -> DType mapping, and the
// CUDA device guard + current stream. Light headers only: ATen/core/Tensor.h and c10/cuda.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>

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

inline void check_last_dim_contiguous(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.dim() >= 1 && (t.stride(-1) == 1 || t.size(-1) <= 1), op, ": the last dimension of ", name,
              " must be contiguous (stride 1), got strides ", t.strides());
}

// The rows of t ([..., hidden]) as one stride: true when every row t.flatten(0, -2)[r] starts
// r * *row_stride elements after the first (dimensions of size 1 place no constraint), as for
// x[:, :hidden] of a wider x or any contiguous tensor. False for e.g. transposed leading dims.
inline bool uniform_row_stride(const at::Tensor& t, int64_t* row_stride) {
  int64_t stride = -1;  // of the innermost leading dimension with more than one row
  int64_t rows = 1;     // rows spanned by the leading dimensions seen so far
  for (int64_t i = t.dim() - 2; i >= 0; --i) {
    const int64_t n = t.size(i);
    if (n == 1) continue;
    if (n == 0) break;  // no rows at all: any stride describes them
    if (stride < 0) {
      stride = t.stride(i);
    } else if (t.stride(i) != rows * stride) {
      return false;
    }
    rows *= n;
  }
  *row_stride = stride < 0 ? t.size(-1) : stride;
  return true;
}

// The bytes [first, last] that t's elements occupy (torch strides are never negative).
inline std::pair<uintptr_t, uintptr_t> byte_range(const at::Tensor& t) {
  int64_t last = 0;
  for (int64_t i = 0; i < t.dim(); ++i) last += (t.size(i) - 1) * t.stride(i);
  const auto first = reinterpret_cast<uintptr_t>(t.const_data_ptr());
  return {first, first + static_cast<uintptr_t>((last + 1) * static_cast<int64_t>(t.element_size())) - 1};
}

inline bool same_view(const at::Tensor& a, const at::Tensor& b) {
  return a.const_data_ptr() == b.const_data_ptr() && a.sizes() == b.sizes() && a.strides() == b.strides() &&
         a.scalar_type() == b.scalar_type();
}

// a and b (at least one of them written by the op) must not share memory. Conservative: the
// spans of their elements are compared, so interleaved views of one buffer are refused too.
inline void check_disjoint(const char* op, const char* a_name, const at::Tensor& a, const char* b_name,
                           const at::Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0) return;
  const auto [a0, a1] = byte_range(a);
  const auto [b0, b1] = byte_range(b);
  TORCH_CHECK(a1 < b0 || b1 < a0, op, ": ", a_name, " and ", b_name,
              " overlap in memory; pass tensors that do not share elements (e.g. .clone() one of them)");
}

// Every pair of the named tensors disjoint.
inline void check_all_disjoint(const char* op,
                               std::initializer_list<std::pair<const char*, const at::Tensor*>> tensors) {
  for (auto i = tensors.begin(); i != tensors.end(); ++i) {
    for (auto j = std::next(i); j != tensors.end(); ++j) check_disjoint(op, i->first, *i->second, j->first, *j->second);
  }
}

// A tensor the op writes must not have elements that share memory (an expand()ed tensor, a
// stride-0 dimension): the result would depend on the order the kernel's threads write in.
inline void check_no_internal_overlap(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(at::has_internal_overlap(t) != at::MemOverlap::Yes, op, ": ", name,
              " is written in place but some of its elements share memory (an expand()ed tensor?); "
              "pass one that owns its elements (.clone())");
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
