// CPU silu_and_mul (torch-free).
#include <cmath>

#include "common/cpu_scalar.h"
#include "cpu_kernels.h"

namespace kernloop::cpu {

void silu_and_mul(void* out, const void* input, int64_t num_tokens, int64_t d, DType dtype) {
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t t = 0; t < num_tokens; ++t) {
      const T* x = static_cast<const T*>(input) + t * 2 * d;
      const T* y = x + d;
      T* o = static_cast<T*>(out) + t * d;
      for (int64_t i = 0; i < d; ++i) {
        const float a = to_float(x[i]);
        // silu rounded to T, then the product rounded again: vLLM's order of rounding.
        const float silu = round_to<T>(a / (1.0f + std::exp(-a)));
        o[i] = from_float<T>(silu * to_float(y[i]));
      }
    }
  });
}

}  // namespace kernloop::cpu
