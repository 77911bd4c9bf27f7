// CPU topk_softmax (torch-free).
#include <cmath>
#include <limits>
#include <vector>

#include "common/cpu_scalar.h"
#include "moe/cpu_kernels.h"

namespace kernloop::moe::cpu {
namespace {

using kernloop::cpu::dispatch_float_types;
using kernloop::cpu::to_float;

template <typename T, typename IdT>
void topk_softmax_impl(float* weights, IdT* ids, int32_t* src, const T* gating, int64_t num_tokens, int64_t E,
                       int64_t k) {
  std::vector<float> x(static_cast<size_t>(E));
  for (int64_t t = 0; t < num_tokens; ++t) {
    const T* g = gating + t * E;
    float max_v = -std::numeric_limits<float>::infinity();
    for (int64_t e = 0; e < E; ++e) {
      x[e] = to_float(g[e]);
      max_v = std::fmax(max_v, x[e]);
    }
    float sum = 0.f;
    for (int64_t e = 0; e < E; ++e) sum += std::exp(x[e] - max_v);
    // Softmax is monotonic, so the top k by weight are the top k logits. Each round takes the
    // best entry ranked strictly below the previous pick in (value desc, index asc) order.
    float prev_v = std::numeric_limits<float>::infinity();
    int64_t prev_i = -1;
    for (int64_t j = 0; j < k; ++j) {
      float best_v = -std::numeric_limits<float>::infinity();
      int64_t best_i = E;  // none yet
      for (int64_t e = 0; e < E; ++e) {
        const float v = x[e];
        const bool eligible = v < prev_v || (v == prev_v && e > prev_i);
        if (eligible && (v > best_v || (v == best_v && e < best_i))) {
          best_v = v;
          best_i = e;
        }
      }
      const bool found = best_i < E;  // false only when the remaining logits are NaN
      weights[t * k + j] = found ? std::exp(best_v - max_v) / sum : 0.f;
      ids[t * k + j] = static_cast<IdT>(found ? best_i : 0);
      src[t * k + j] = static_cast<int32_t>(j * num_tokens + t);
      prev_v = best_v;
      prev_i = best_i;
    }
  }
}

}  // namespace

void topk_softmax(float* topk_weights, void* topk_ids, IndexType id_type, int32_t* token_expert_indices,
                  const void* gating_output, int64_t num_tokens, int64_t num_experts, int64_t topk, DType dtype) {
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(gating_output);
    if (id_type == IndexType::kInt32) {
      topk_softmax_impl(topk_weights, static_cast<int32_t*>(topk_ids), token_expert_indices, g, num_tokens,
                        num_experts, topk);
    } else {
      topk_softmax_impl(topk_weights, static_cast<int64_t*>(topk_ids), token_expert_indices, g, num_tokens,
                        num_experts, topk);
    }
  });
}

}  // namespace kernloop::moe::cpu
