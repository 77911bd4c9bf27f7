// Torch glue of the _moe_C ops: check every argument, then call the CPU kernels or the CUDA
// launchers (device guard + torch's current stream).
#include "moe/moe_ops.h"

#include <algorithm>

#include "glue.h"
#include "moe/cpu_kernels.h"
#include "moe/limits.h"
#if KERNLOOP_WITH_CUDA
#include "moe/cuda_kernels.h"
#endif

namespace kernloop::moe::ops {

using namespace kernloop::glue;

namespace {

void check_2d(const char* op, const char* name, const at::Tensor& t, int64_t rows, int64_t cols) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, op, ": ", name, " must have shape [", rows,
              ", ", cols, "], got ", t.sizes());
}

}  // namespace

void topk_softmax(at::Tensor& topk_weights, at::Tensor& topk_ids, at::Tensor& token_expert_indices,
                  const at::Tensor& gating_output, bool renormalize, const std::optional<at::Tensor>& bias) {
  constexpr const char* op = "topk_softmax";
  const DType dtype = float_dtype(op, "gating_output", gating_output);
  const IndexType id_type = index_type(op, "topk_ids", topk_ids);
  check_dtype(op, "topk_weights", topk_weights, at::ScalarType::Float);
  check_dtype(op, "token_expert_indices", token_expert_indices, at::ScalarType::Int);
  check_same_device(op, "topk_weights", topk_weights, "gating_output", gating_output);
  check_same_device(op, "topk_ids", topk_ids, "gating_output", gating_output);
  check_same_device(op, "token_expert_indices", token_expert_indices, "gating_output", gating_output);
  TORCH_CHECK(gating_output.dim() == 2, op, ": gating_output must be [num_tokens, num_experts], got ",
              gating_output.sizes());
  const int64_t num_tokens = gating_output.size(0);
  const int64_t num_experts = gating_output.size(1);
  TORCH_CHECK(topk_weights.dim() == 2, op, ": topk_weights must be [num_tokens, topk], got ", topk_weights.sizes());
  const int64_t topk = topk_weights.size(1);
  TORCH_CHECK(topk >= 1 && topk <= num_experts, op, ": topk (topk_weights.size(1) = ", topk,
              ") must be in [1, num_experts = ", num_experts, "]");
  check_2d(op, "topk_weights", topk_weights, num_tokens, topk);
  check_2d(op, "topk_ids", topk_ids, num_tokens, topk);
  check_2d(op, "token_expert_indices", token_expert_indices, num_tokens, topk);
  check_contiguous(op, "gating_output", gating_output);
  check_contiguous(op, "topk_weights", topk_weights);
  check_contiguous(op, "topk_ids", topk_ids);
  check_contiguous(op, "token_expert_indices", token_expert_indices);
  check_fits_int(op, "num_experts", num_experts);
  check_fits_int(op, "num_tokens * topk", num_tokens * topk);
  check_all_disjoint(op, {{"topk_weights", &topk_weights},
                          {"topk_ids", &topk_ids},
                          {"token_expert_indices", &token_expert_indices},
                          {"gating_output", &gating_output}});
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    float_dtype(op, "bias", *bias);
    check_same_device(op, "bias", *bias, "gating_output", gating_output);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == num_experts, op, ": bias must have shape [num_experts = ",
                num_experts, "], got ", bias->sizes());
    check_all_disjoint(op, {{"bias", &*bias}, {"topk_weights", &topk_weights}, {"topk_ids", &topk_ids}});
  }
  // The kernels read the bias as num_experts contiguous float32 values; anything else is
  // converted first (num_experts elements).
  at::Tensor bias_f32;
  if (has_bias) {
    bias_f32 = bias->scalar_type() == at::ScalarType::Float ? bias->contiguous() : bias->to(at::kFloat).contiguous();
  }
  const float* bias_ptr = has_bias ? bias_f32.const_data_ptr<float>() : nullptr;

  float* w = topk_weights.data_ptr<float>();
  int32_t* src = token_expert_indices.data_ptr<int32_t>();
  if (gating_output.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(gating_output);
    check_launch(op, cuda::topk_softmax(w, topk_ids.data_ptr(), id_type, src, gating_output.const_data_ptr(), bias_ptr,
                                        num_tokens, num_experts, topk, renormalize, dtype, ctx.stream()));
    return;
#endif
  }
  require_cpu(op, gating_output);
  cpu::topk_softmax(w, topk_ids.data_ptr(), id_type, src, gating_output.const_data_ptr(), bias_ptr, num_tokens,
                    num_experts, topk, renormalize, dtype);
}

void moe_align_block_size(const at::Tensor& topk_ids, int64_t num_experts, int64_t block_size,
                          at::Tensor& sorted_token_ids, at::Tensor& expert_ids, at::Tensor& num_tokens_post_pad) {
  constexpr const char* op = "moe_align_block_size";
  const IndexType id_type = index_type(op, "topk_ids", topk_ids);
  check_dtype(op, "sorted_token_ids", sorted_token_ids, at::ScalarType::Int);
  check_dtype(op, "expert_ids", expert_ids, at::ScalarType::Int);
  check_dtype(op, "num_tokens_post_pad", num_tokens_post_pad, at::ScalarType::Int);
  check_same_device(op, "sorted_token_ids", sorted_token_ids, "topk_ids", topk_ids);
  check_same_device(op, "expert_ids", expert_ids, "topk_ids", topk_ids);
  check_same_device(op, "num_tokens_post_pad", num_tokens_post_pad, "topk_ids", topk_ids);
  TORCH_CHECK(num_experts >= 1 && num_experts <= kMaxAlignExperts, op, ": num_experts must be in [1, ",
              kMaxAlignExperts, "], got ", num_experts);
  TORCH_CHECK(block_size >= 1, op, ": block_size must be >= 1, got ", block_size);
  check_contiguous(op, "topk_ids", topk_ids);
  check_contiguous(op, "sorted_token_ids", sorted_token_ids);
  check_contiguous(op, "expert_ids", expert_ids);
  TORCH_CHECK(num_tokens_post_pad.numel() >= 1, op, ": num_tokens_post_pad must hold one int32");
  const int64_t numel = topk_ids.numel();
  check_fits_int(op, "topk_ids.numel()", numel);
  check_fits_int(op, "block_size", block_size);
  // Worst case: every expert that gets an entry is padded by block_size - 1.
  const int64_t need_sorted = numel + std::min(num_experts, numel) * (block_size - 1);
  const int64_t need_blocks = (need_sorted + block_size - 1) / block_size;
  TORCH_CHECK(sorted_token_ids.dim() == 1 && sorted_token_ids.numel() >= need_sorted, op,
              ": sorted_token_ids must be 1-D with at least topk_ids.numel() + min(num_experts, topk_ids.numel())"
              " * (block_size - 1) = ",
              need_sorted, " entries, got ", sorted_token_ids.sizes());
  TORCH_CHECK(expert_ids.dim() == 1 && expert_ids.numel() >= need_blocks, op, ": expert_ids must be 1-D with at least ",
              need_blocks, " entries, got ", expert_ids.sizes());
  check_fits_int(op, "sorted_token_ids.numel()", sorted_token_ids.numel());
  check_all_disjoint(op, {{"topk_ids", &topk_ids},
                          {"sorted_token_ids", &sorted_token_ids},
                          {"experts_ids", &expert_ids},
                          {"num_tokens_post_pad", &num_tokens_post_pad}});

  int32_t* sorted = sorted_token_ids.data_ptr<int32_t>();
  int32_t* experts = expert_ids.data_ptr<int32_t>();
  int32_t* total = num_tokens_post_pad.data_ptr<int32_t>();
  if (topk_ids.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(topk_ids);
    at::Tensor cursor = topk_ids.new_empty({num_experts}, topk_ids.options().dtype(at::ScalarType::Int));
    check_launch(op, cuda::moe_align_block_size(topk_ids.const_data_ptr(), id_type, numel, num_experts, block_size,
                                                sorted, sorted_token_ids.numel(), experts, expert_ids.numel(), total,
                                                cursor.data_ptr<int32_t>(), ctx.stream()));
    return;
#endif
  }
  require_cpu(op, topk_ids);
  cpu::moe_align_block_size(topk_ids.const_data_ptr(), id_type, numel, num_experts, block_size, sorted,
                            sorted_token_ids.numel(), experts, expert_ids.numel(), total);
}

void moe_sum(const at::Tensor& input, at::Tensor& output) {
  constexpr const char* op = "moe_sum";
  const DType dtype = float_dtype(op, "input", input);
  check_same_dtype(op, "output", output, "input", input);
  check_same_device(op, "output", output, "input", input);
  TORCH_CHECK(input.dim() == 3, op, ": input must be [num_tokens, topk, hidden], got ", input.sizes());
  const int64_t num_tokens = input.size(0);
  const int64_t topk = input.size(1);
  const int64_t hidden = input.size(2);
  check_2d(op, "output", output, num_tokens, hidden);
  check_contiguous(op, "input", input);
  check_contiguous(op, "output", output);
  check_disjoint(op, "output", output, "input", input);
  check_fits_int(op, "number of tokens", num_tokens);
  check_fits_int(op, "topk * hidden", topk * hidden);

  if (input.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(input);
    check_launch(op, cuda::moe_sum(input.const_data_ptr(), output.data_ptr(), num_tokens, topk, hidden, dtype,
                                   ctx.stream()));
    return;
#endif
  }
  require_cpu(op, input);
  cpu::moe_sum(input.const_data_ptr(), output.data_ptr(), num_tokens, topk, hidden, dtype);
}

}  // namespace kernloop::moe::ops
