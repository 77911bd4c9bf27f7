// Element types the kernels handle, without torch: the glue maps at::ScalarType to these, the
// CPU and CUDA kernels dispatch on them. Torch-free so every kernel TU stays small.
#pragma once

#include <cstdint>

namespace kernloop {

enum class DType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Integer index types (expert ids).
enum class IndexType : int32_t { kInt32 = 0, kInt64 = 1 };

}  // namespace kernloop
