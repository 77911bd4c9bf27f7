// Torch glue of the _C ops: check every argument (a bad call raises, it never reaches a kernel),
// then hand raw pointers to the CPU kernels or, for CUDA tensors, to the CUDA launchers on
// torch's current stream.
#include "ops.h"

#include "cpu_kernels.h"
#include "glue.h"
#if KERNLOOP_WITH_CUDA
#include "cuda_kernels.h"
#endif

namespace kernloop::ops {

using namespace kernloop::glue;

void rms_norm(at::Tensor& out, const at::Tensor& input, const at::Tensor& weight, double epsilon) {
  constexpr const char* op = "rms_norm";
  const DType dtype = float_dtype(op, "input", input);
  check_same_dtype(op, "out", out, "input", input);
  check_same_dtype(op, "weight", weight, "input", input);
  check_same_device(op, "out", out, "input", input);
  check_same_device(op, "weight", weight, "input", input);
  TORCH_CHECK(input.dim() >= 1, op, ": input must have at least one dimension");
  const int64_t hidden = input.size(-1);
  TORCH_CHECK(hidden > 0, op, ": the hidden size (last dimension of input) must be > 0");
  check_fits_int(op, "hidden size", hidden);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == hidden, op, ": weight must have shape [", hidden, "], got ",
              weight.sizes());
  TORCH_CHECK(out.sizes() == input.sizes(), op, ": out must have the shape of input ", input.sizes(), ", got ",
              out.sizes());
  check_contiguous(op, "out", out);
  check_contiguous(op, "weight", weight);
  // Rows of a 2-D input may be strided (e.g. a slice of a wider tensor); anything else is copied.
  at::Tensor x = input;
  int64_t input_stride = hidden;
  if (!input.is_contiguous()) {
    if (input.dim() == 2 && input.stride(1) == 1 && input.stride(0) >= hidden) {
      input_stride = input.stride(0);
    } else {
      x = input.contiguous();
    }
  }
  const int64_t num_tokens = input.numel() / hidden;
  check_fits_int(op, "number of tokens", num_tokens);
  const float eps = static_cast<float>(epsilon);

  if (input.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(input);
    check_launch(op, cuda::rms_norm(out.data_ptr(), x.const_data_ptr(), weight.const_data_ptr(), eps, num_tokens,
                                    hidden, input_stride, dtype, ctx.stream()));
    return;
#endif
  }
  require_cpu(op, input);
  cpu::rms_norm(out.data_ptr(), x.const_data_ptr(), weight.const_data_ptr(), eps, num_tokens, hidden, input_stride,
                dtype);
}

void fused_add_rms_norm(at::Tensor& input, at::Tensor& residual, const at::Tensor& weight, double epsilon) {
  constexpr const char* op = "fused_add_rms_norm";
  const DType dtype = float_dtype(op, "input", input);
  check_same_dtype(op, "residual", residual, "input", input);
  check_same_dtype(op, "weight", weight, "input", input);
  check_same_device(op, "residual", residual, "input", input);
  check_same_device(op, "weight", weight, "input", input);
  TORCH_CHECK(input.dim() >= 1, op, ": input must have at least one dimension");
  const int64_t hidden = input.size(-1);
  TORCH_CHECK(hidden > 0, op, ": the hidden size (last dimension of input) must be > 0");
  check_fits_int(op, "hidden size", hidden);
  TORCH_CHECK(residual.sizes() == input.sizes(), op, ": residual must have the shape of input ", input.sizes(),
              ", got ", residual.sizes());
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == hidden, op, ": weight must have shape [", hidden, "], got ",
              weight.sizes());
  check_contiguous(op, "input", input);
  check_contiguous(op, "residual", residual);
  check_contiguous(op, "weight", weight);
  const int64_t num_tokens = input.numel() / hidden;
  check_fits_int(op, "number of tokens", num_tokens);
  const float eps = static_cast<float>(epsilon);

  if (input.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(input);
    check_launch(op, cuda::fused_add_rms_norm(input.data_ptr(), residual.data_ptr(), weight.const_data_ptr(), eps,
                                              num_tokens, hidden, dtype, ctx.stream()));
    return;
#endif
  }
  require_cpu(op, input);
  cpu::fused_add_rms_norm(input.data_ptr(), residual.data_ptr(), weight.const_data_ptr(), eps, num_tokens, hidden,
                          dtype);
}

void silu_and_mul(at::Tensor& out, const at::Tensor& input) {
  constexpr const char* op = "silu_and_mul";
  const DType dtype = float_dtype(op, "input", input);
  check_same_dtype(op, "out", out, "input", input);
  check_same_device(op, "out", out, "input", input);
  TORCH_CHECK(input.dim() >= 1, op, ": input must have at least one dimension");
  const int64_t two_d = input.size(-1);
  TORCH_CHECK(two_d % 2 == 0, op, ": the last dimension of input must be even (x and gate halves), got ", two_d);
  const int64_t d = two_d / 2;
  check_fits_int(op, "d", d);
  TORCH_CHECK(out.dim() == input.dim() && out.size(-1) == d &&
                  out.sizes().slice(0, out.dim() - 1) == input.sizes().slice(0, input.dim() - 1),
              op, ": out must have shape [..., ", d, "] matching input ", input.sizes(), ", got ", out.sizes());
  check_contiguous(op, "input", input);
  check_contiguous(op, "out", out);
  const int64_t num_tokens = d == 0 ? 0 : input.numel() / two_d;
  check_fits_int(op, "number of tokens", num_tokens);

  if (input.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(input);
    check_launch(op, cuda::silu_and_mul(out.data_ptr(), input.const_data_ptr(), num_tokens, d, dtype, ctx.stream()));
    return;
#endif
  }
  require_cpu(op, input);
  cpu::silu_and_mul(out.data_ptr(), input.const_data_ptr(), num_tokens, d, dtype);
}

namespace {

// Geometry of query or key for rotary_embedding: [*positions.shape, heads * head_size] or
// [*positions.shape, heads, head_size], last dimension contiguous, tokens evenly strided.
struct HeadLayout {
  int64_t num_heads;
  int64_t token_stride;
  int64_t head_stride;
};

HeadLayout head_layout(const char* op, const char* name, const at::Tensor& t, const at::Tensor& positions,
                       int64_t head_size) {
  const int64_t pd = positions.dim();
  TORCH_CHECK(t.dim() == pd + 1 || t.dim() == pd + 2, op, ": ", name, " must have shape [*positions.shape, ",
              "heads * head_size] or [*positions.shape, heads, head_size], got ", t.sizes(), " for positions ",
              positions.sizes());
  TORCH_CHECK(t.sizes().slice(0, pd) == positions.sizes(), op, ": the leading dimensions of ", name, " ",
              t.sizes(), " must equal positions.shape ", positions.sizes());
  TORCH_CHECK(t.stride(-1) == 1 || t.size(-1) <= 1, op, ": the last dimension of ", name, " must be contiguous");
  HeadLayout layout{};
  if (t.dim() == pd + 1) {
    TORCH_CHECK(t.size(-1) % head_size == 0, op, ": the last dimension of ", name, " (", t.size(-1),
                ") must be a multiple of head_size (", head_size, ")");
    layout.num_heads = t.size(-1) / head_size;
    layout.head_stride = head_size;
  } else {
    TORCH_CHECK(t.size(-1) == head_size, op, ": the last dimension of ", name, " (", t.size(-1),
                ") must equal head_size (", head_size, ")");
    layout.num_heads = t.size(-2);
    layout.head_stride = t.stride(-2);
  }
  layout.token_stride = t.stride(pd - 1);
  if (pd == 2) {
    TORCH_CHECK(t.size(0) <= 1 || t.stride(0) == t.size(1) * t.stride(1), op, ": ", name,
                " must have evenly strided tokens across its first two dimensions (call .contiguous() first)");
  }
  check_fits_int(op, "heads", layout.num_heads);
  return layout;
}

}  // namespace

void rotary_embedding(const at::Tensor& positions, at::Tensor& query, std::optional<at::Tensor> key,
                      int64_t head_size, const at::Tensor& cos_sin_cache, bool is_neox) {
  constexpr const char* op = "rotary_embedding";
  const DType dtype = float_dtype(op, "query", query);
  check_dtype(op, "positions", positions, at::ScalarType::Long);
  check_same_dtype(op, "cos_sin_cache", cos_sin_cache, "query", query);
  check_same_device(op, "positions", positions, "query", query);
  check_same_device(op, "cos_sin_cache", cos_sin_cache, "query", query);
  TORCH_CHECK(positions.dim() == 1 || positions.dim() == 2, op,
              ": positions must be [num_tokens] or [batch, seq_len], got ", positions.sizes());
  check_contiguous(op, "positions", positions);
  check_contiguous(op, "cos_sin_cache", cos_sin_cache);
  TORCH_CHECK(head_size > 0, op, ": head_size must be > 0, got ", head_size);
  TORCH_CHECK(cos_sin_cache.dim() == 2, op, ": cos_sin_cache must be [max_position, rot_dim], got ",
              cos_sin_cache.sizes());
  const int64_t rot_dim = cos_sin_cache.size(1);
  TORCH_CHECK(rot_dim > 0 && rot_dim % 2 == 0 && rot_dim <= head_size, op,
              ": cos_sin_cache.size(1) (rot_dim) must be even and in [2, head_size=", head_size, "], got ", rot_dim);
  const HeadLayout q = head_layout(op, "query", query, positions, head_size);
  HeadLayout k{0, 0, 0};
  void* key_ptr = nullptr;
  if (key.has_value()) {
    check_same_dtype(op, "key", *key, "query", query);
    check_same_device(op, "key", *key, "query", query);
    k = head_layout(op, "key", *key, positions, head_size);
    key_ptr = key->data_ptr();
  }
  const int64_t num_tokens = positions.numel();
  check_fits_int(op, "number of tokens", num_tokens);

  if (query.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(query);
    check_launch(op, cuda::rotary_embedding(positions.const_data_ptr<int64_t>(), query.data_ptr(), key_ptr,
                                            cos_sin_cache.const_data_ptr(), num_tokens, rot_dim, head_size,
                                            q.num_heads, k.num_heads, q.token_stride, q.head_stride, k.token_stride,
                                            k.head_stride, is_neox, dtype, ctx.stream()));
    return;
#endif
  }
  require_cpu(op, query);
  const int64_t bad = cpu::rotary_embedding(positions.const_data_ptr<int64_t>(), query.data_ptr(), key_ptr,
                                            cos_sin_cache.const_data_ptr(), num_tokens, cos_sin_cache.size(0), rot_dim,
                                            head_size, q.num_heads, k.num_heads, q.token_stride, q.head_stride,
                                            k.token_stride, k.head_stride, is_neox, dtype);
  TORCH_CHECK(bad < 0, op, ": positions.flatten()[", bad, "] = ", bad < 0 ? 0 : positions.const_data_ptr<int64_t>()[bad],
              " is outside the cos_sin_cache (", cos_sin_cache.size(0), " positions)");
}

}  // namespace kernloop::ops
