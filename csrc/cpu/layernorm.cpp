// CPU rms_norm / fused_add_rms_norm (torch-free).
#include <cmath>

#include "common/cpu_scalar.h"
#include "cpu_kernels.h"

namespace kernloop::cpu {
namespace {

// Accumulate in double: one row is at most a few 10k elements, and the CPU path is the
// reference-quality path, not the fast one.
template <typename T>
float inv_rms(const T* x, int64_t hidden, float eps) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < hidden; ++i) {
    const double v = to_float(x[i]);
    sum_sq += v * v;
  }
  return static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(hidden) + static_cast<double>(eps)));
}

// Normalised value rounded to T, then scaled by the weight (as vLLM and its torch reference do).
template <typename T>
void normalize_row(T* out, const T* x, const T* weight, float inv, int64_t hidden) {
  for (int64_t i = 0; i < hidden; ++i) {
    out[i] = from_float<T>(round_to<T>(to_float(x[i]) * inv) * to_float(weight[i]));
  }
}

}  // namespace

void rms_norm(void* out, const void* input, const void* weight, float eps, int64_t num_tokens, int64_t hidden,
              int64_t input_stride, DType dtype) {
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t t = 0; t < num_tokens; ++t) {
      const T* x = static_cast<const T*>(input) + t * input_stride;
      T* y = static_cast<T*>(out) + t * hidden;
      normalize_row(y, x, static_cast<const T*>(weight), inv_rms(x, hidden, eps), hidden);
    }
  });
}

void fused_add_rms_norm(void* input, void* residual, const void* weight, float eps, int64_t num_tokens,
                        int64_t hidden, int64_t input_stride, DType dtype) {
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t t = 0; t < num_tokens; ++t) {
      T* x = static_cast<T*>(input) + t * input_stride;
      T* r = static_cast<T*>(residual) + t * hidden;
      for (int64_t i = 0; i < hidden; ++i) r[i] = from_float<T>(to_float(x[i]) + to_float(r[i]));
      normalize_row(x, r, static_cast<const T*>(weight), inv_rms(r, hidden, eps), hidden);
    }
  });
}

}  // namespace kernloop::cpu
