// CPU moe_align_block_size and moe_sum (torch-free).
#include <vector>

#include "common/cpu_scalar.h"
#include "moe/cpu_kernels.h"

namespace kernloop::moe::cpu {
namespace {

template <typename IdT>
void align_impl(const IdT* ids, int64_t numel, int64_t E, int64_t bs, int32_t* sorted, int64_t sorted_len,
                int32_t* expert_ids, int64_t expert_len, int32_t* total_out) {
  std::vector<int64_t> counts(static_cast<size_t>(E), 0);
  for (int64_t i = 0; i < numel; ++i) {
    const int64_t e = static_cast<int64_t>(ids[i]);
    if (e >= 0 && e < E) ++counts[e];
  }
  std::vector<int64_t> cursor(static_cast<size_t>(E), 0);
  int64_t total = 0;
  for (int64_t e = 0; e < E; ++e) {
    cursor[e] = total;
    const int64_t padded = (counts[e] + bs - 1) / bs * bs;
    for (int64_t b = total / bs; b < (total + padded) / bs; ++b) expert_ids[b] = static_cast<int32_t>(e);
    total += padded;
  }
  for (int64_t b = total / bs; b < expert_len; ++b) expert_ids[b] = -1;
  for (int64_t i = 0; i < sorted_len; ++i) sorted[i] = static_cast<int32_t>(numel);
  for (int64_t i = 0; i < numel; ++i) {
    const int64_t e = static_cast<int64_t>(ids[i]);
    if (e >= 0 && e < E) sorted[cursor[e]++] = static_cast<int32_t>(i);
  }
  *total_out = static_cast<int32_t>(total);
}

}  // namespace

void moe_align_block_size(const void* topk_ids, IndexType id_type, int64_t numel, int64_t num_experts,
                          int64_t block_size, int32_t* sorted_token_ids, int64_t sorted_len, int32_t* expert_ids,
                          int64_t expert_len, int32_t* num_tokens_post_pad) {
  if (id_type == IndexType::kInt32) {
    align_impl(static_cast<const int32_t*>(topk_ids), numel, num_experts, block_size, sorted_token_ids, sorted_len,
               expert_ids, expert_len, num_tokens_post_pad);
  } else {
    align_impl(static_cast<const int64_t*>(topk_ids), numel, num_experts, block_size, sorted_token_ids, sorted_len,
               expert_ids, expert_len, num_tokens_post_pad);
  }
}

void moe_sum(const void* input, void* output, int64_t num_tokens, int64_t topk, int64_t hidden, DType dtype) {
  using kernloop::cpu::from_float;
  using kernloop::cpu::to_float;
  kernloop::cpu::dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    std::vector<float> acc(static_cast<size_t>(hidden));
    for (int64_t t = 0; t < num_tokens; ++t) {
      const T* x = static_cast<const T*>(input) + t * topk * hidden;
      T* o = static_cast<T*>(output) + t * hidden;
      for (int64_t h = 0; h < hidden; ++h) acc[h] = 0.f;
      for (int64_t j = 0; j < topk; ++j) {
        for (int64_t h = 0; h < hidden; ++h) acc[h] += to_float(x[j * hidden + h]);
      }
      for (int64_t h = 0; h < hidden; ++h) o[h] = from_float<T>(acc[h]);
    }
  });
}

}  // namespace kernloop::moe::cpu
