// CPU topk_softmax (torch-free): the semantics of moe/cpu_kernels.h, one token at a time.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "common/cpu_scalar.h"
#include "moe/cpu_kernels.h"

namespace kernloop::moe::cpu {
namespace {

using kernloop::cpu::dispatch_float_types;
using kernloop::cpu::to_float;

// (s, i) ranks before (s2, i2): higher score first, NaN after every number, ties (and NaN
// against NaN) to the lower index. A strict total order, so the result is unique.
inline bool ranks_before(float s, int64_t i, float s2, int64_t i2) {
  const bool nan = std::isnan(s);
  const bool nan2 = std::isnan(s2);
  if (nan != nan2) return nan2;
  if (!nan && s != s2) return s > s2;
  return i < i2;
}

template <typename T, typename IdT>
void topk_softmax_impl(float* weights, IdT* ids, int32_t* src, const T* gating, const float* bias,
                       int64_t num_tokens, int64_t E, int64_t k, bool renormalize) {
  std::vector<float> p(static_cast<size_t>(E));
  std::vector<float> score(static_cast<size_t>(E));
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < num_tokens; ++t) {
    const T* g = gating + t * E;
    float max_v = -std::numeric_limits<float>::infinity();
    for (int64_t e = 0; e < E; ++e) {
      p[e] = to_float(g[e]);
      max_v = std::fmax(max_v, p[e]);  // NaN logits are skipped here; they make the sum NaN below
    }
    float sum = 0.f;
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(p[e] - max_v);
      sum += p[e];
    }
    const float inv_sum = 1.f / sum;
    for (int64_t e = 0; e < E; ++e) {
      p[e] *= inv_sum;
      score[e] = bias != nullptr ? p[e] + bias[e] : p[e];
    }
    std::iota(order.begin(), order.end(), int64_t{0});
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return ranks_before(score[a], a, score[b], b); });
    float picked = 0.f;
    for (int64_t j = 0; j < k; ++j) picked += p[order[j]];
    const float denom = renormalize && picked > 0.f ? picked : 1.f;
    for (int64_t j = 0; j < k; ++j) {
      weights[t * k + j] = renormalize ? p[order[j]] / denom : p[order[j]];
      ids[t * k + j] = static_cast<IdT>(order[j]);
      src[t * k + j] = static_cast<int32_t>(j * num_tokens + t);
    }
  }
}

}  // namespace

void topk_softmax(float* topk_weights, void* topk_ids, IndexType id_type, int32_t* token_expert_indices,
                  const void* gating_output, const float* bias, int64_t num_tokens, int64_t num_experts,
                  int64_t topk, bool renormalize, DType dtype) {
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* g = static_cast<const T*>(gating_output);
    if (id_type == IndexType::kInt32) {
      topk_softmax_impl(topk_weights, static_cast<int32_t*>(topk_ids), token_expert_indices, g, bias, num_tokens,
                        num_experts, topk, renormalize);
    } else {
      topk_softmax_impl(topk_weights, static_cast<int64_t*>(topk_ids), token_expert_indices, g, bias, num_tokens,
                        num_experts, topk, renormalize);
    }
  });
}

}  // namespace kernloop::moe::cpu
