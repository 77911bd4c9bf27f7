// Torch glue of the _C ops: check every argument (a bad call raises, it never reaches a kernel),
// then hand raw pointers to the CPU kernels or, for CUDA tensors, to the CUDA launchers on
// torch's current stream.
#include "ops.h"

#include <algorithm>
#include <initializer_list>
#include <utility>
#include <vector>

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
  // out is input itself (in place) or shares no memory with it or with weight.
  if (!same_view(out, input)) check_disjoint(op, "out", out, "input", input);
  check_disjoint(op, "out", out, "weight", weight);
  const int64_t num_tokens = input.numel() / hidden;
  check_fits_int(op, "number of tokens", num_tokens);
  // Any input whose last dimension is contiguous and whose rows are evenly strided (a slice
  // x[..., :hidden] of a wider tensor, an expand()ed row) is read in place through its row
  // stride. Only a layout no single row stride describes (e.g. transposed leading dimensions,
  // a strided last dimension) is copied first; the copy is private, so out cannot alias it.
  at::Tensor x = input;
  int64_t input_stride = hidden;
  if (!(input.stride(-1) == 1 || hidden == 1) || !uniform_row_stride(input, &input_stride)) {
    x = input.contiguous();
    input_stride = hidden;
  }
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
  // input is written in place, so it is never copied: its rows must be evenly strided (as
  // vLLM's input.stride(-2)) and must not overlap each other.
  check_last_dim_contiguous(op, "input", input);
  int64_t input_stride = hidden;
  TORCH_CHECK(uniform_row_stride(input, &input_stride), op,
              ": the rows of input must be evenly strided (input.flatten(0, -2) must be a view), got shape ",
              input.sizes(), " with strides ", input.strides(), "; call .contiguous() first");
  const int64_t num_tokens = input.numel() / hidden;
  TORCH_CHECK(num_tokens <= 1 || input_stride >= hidden, op, ": input is written in place but its rows overlap (row ",
              "stride ", input_stride, " < hidden size ", hidden, ", an expand()ed tensor?); pass one that owns its ",
              "elements (.clone())");
  check_contiguous(op, "residual", residual);
  check_contiguous(op, "weight", weight);
  check_all_disjoint(op, {{"input", &input}, {"residual", &residual}, {"weight", &weight}});
  check_fits_int(op, "number of tokens", num_tokens);
  const float eps = static_cast<float>(epsilon);

  if (input.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(input);
    check_launch(op, cuda::fused_add_rms_norm(input.data_ptr(), residual.data_ptr(), weight.const_data_ptr(), eps,
                                              num_tokens, hidden, input_stride, dtype, ctx.stream()));
    return;
#endif
  }
  require_cpu(op, input);
  cpu::fused_add_rms_norm(input.data_ptr(), residual.data_ptr(), weight.const_data_ptr(), eps, num_tokens, hidden,
                          input_stride, dtype);
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
  check_disjoint(op, "out", out, "input", input);
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

// Whether the elements of a strided index space {sum_i x_i * stride_i : 0 <= x_i < size_i}
// may repeat. Sufficient test (the one torch uses for non-overlapping layouts): dimensions of
// size <= 1 are ignored; sorted by stride, each stride must exceed the span of the smaller ones.
bool dims_overlap(std::initializer_list<std::pair<int64_t, int64_t>> dims /* (size, stride) */) {
  std::vector<std::pair<int64_t, int64_t>> d;
  for (const auto& [size, stride] : dims) {
    if (size == 0) return false;  // no elements at all
    if (size > 1) d.emplace_back(stride, size);
  }
  std::sort(d.begin(), d.end());
  int64_t span = 0;  // largest offset reachable with the dimensions seen so far
  for (const auto& [stride, size] : d) {
    if (stride <= span) return true;
    span += (size - 1) * stride;
  }
  return false;
}

// Geometry of query or key for rotary_embedding: [*positions.shape, heads * head_size] or
// [*positions.shape, heads, head_size], last dimension contiguous, tokens evenly strided.
struct HeadLayout {
  int64_t num_heads;
  int64_t token_stride;
  int64_t head_stride;
};

HeadLayout head_layout(const char* op, const char* name, const at::Tensor& t, const at::Tensor& positions,
                       int64_t head_size, int64_t rot_dim) {
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
    layout.head_stride = t.size(-2) > 1 ? t.stride(-2) : head_size;
  }
  // Token i of positions.flatten() must sit at i * token_stride. A dimension of size 1 places
  // no constraint, so [B, 1] positions with a sliced query (q[:, None] of a wider qkv) work.
  if (pd == 1 || t.size(0) == 1) {
    layout.token_stride = t.stride(pd - 1);
  } else if (t.size(1) == 1) {
    layout.token_stride = t.stride(0);
  } else {
    TORCH_CHECK(t.stride(0) == t.size(1) * t.stride(1), op, ": ", name,
                " must have evenly strided tokens across its first two dimensions (call .contiguous() first)");
    layout.token_stride = t.stride(1);
  }
  check_fits_int(op, "heads", layout.num_heads);
  // Written in place: no two rotated elements (token, head, first rot_dim of the head) may
  // share memory. Checked as torch checks for overlap: with the dimensions sorted by stride,
  // each stride must pass the extent of all the smaller ones.
  TORCH_CHECK(!dims_overlap({{positions.numel(), layout.token_stride}, {layout.num_heads, layout.head_stride},
                             {rot_dim, 1}}),
              op, ": ", name, " is written in place but its heads or tokens overlap in memory (strides ",
              t.strides(), ", an expand()ed tensor?); pass one that owns its elements (.clone())");
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
  const HeadLayout q = head_layout(op, "query", query, positions, head_size, rot_dim);
  HeadLayout k{0, 0, 0};
  const bool has_key = key.has_value() && key->defined();
  if (has_key) {
    check_same_dtype(op, "key", *key, "query", query);
    check_same_device(op, "key", *key, "query", query);
    k = head_layout(op, "key", *key, positions, head_size, rot_dim);
    TORCH_CHECK(key->numel() == 0 || key->const_data_ptr() != query.const_data_ptr(), op,
                ": key and query are the same memory; it would be rotated twice");
  }
  const int64_t num_tokens = positions.numel();
  check_fits_int(op, "number of tokens", num_tokens);
  void* key_ptr = has_key ? key->data_ptr() : nullptr;

  if (query.is_cuda()) {
#if KERNLOOP_WITH_CUDA
    const CudaContext ctx(query);
    check_launch(op, cuda::rotary_embedding(positions.const_data_ptr<int64_t>(), query.data_ptr(), key_ptr,
                                            cos_sin_cache.const_data_ptr(), num_tokens, cos_sin_cache.size(0),
                                            rot_dim, head_size,
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
