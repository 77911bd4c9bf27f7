// The _C ops as torch sees them (registered in torch_bindings.cpp, implemented in ops.cpp).
// Schemas and semantics follow vLLM's ops of the same names.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace kernloop::ops {

void rms_norm(at::Tensor& out, const at::Tensor& input, const at::Tensor& weight, double epsilon);

void fused_add_rms_norm(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double epsilon);

void silu_and_mul(at::Tensor& out, const at::Tensor& input);

void rotary_embedding(const at::Tensor& positions, at::Tensor& query, std::optional<at::Tensor> key,
                      int64_t head_size, const at::Tensor& cos_sin_cache, bool is_neox);

}  // namespace kernloop::ops
