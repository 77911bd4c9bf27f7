// CPU rotary_embedding (torch-free).
#include "common/cpu_scalar.h"
#include "cpu_kernels.h"

namespace kernloop::cpu {
namespace {

template <typename T>
void rotate_heads(T* base, int64_t num_heads, int64_t head_stride, const T* cos, const T* sin, int64_t embed_dim,
                  bool is_neox) {
  for (int64_t h = 0; h < num_heads; ++h) {
    T* head = base + h * head_stride;
    for (int64_t i = 0; i < embed_dim; ++i) {
      // neox: the two halves of the rotated span pair up; gpt-j: adjacent elements pair up.
      const int64_t xi = is_neox ? i : 2 * i;
      const int64_t yi = is_neox ? embed_dim + i : 2 * i + 1;
      const float c = to_float(cos[i]);
      const float s = to_float(sin[i]);
      const float x = to_float(head[xi]);
      const float y = to_float(head[yi]);
      head[xi] = from_float<T>(x * c - y * s);
      head[yi] = from_float<T>(y * c + x * s);
    }
  }
}

}  // namespace

int64_t rotary_embedding(const int64_t* positions, void* query, void* key, const void* cos_sin_cache,
                         int64_t num_tokens, int64_t max_position, int64_t rot_dim, int64_t head_size,
                         int64_t num_heads, int64_t num_kv_heads, int64_t query_token_stride,
                         int64_t query_head_stride, int64_t key_token_stride, int64_t key_head_stride,
                         bool is_neox, DType dtype) {
  (void)head_size;
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (positions[t] < 0 || positions[t] >= max_position) return t;
  }
  const int64_t embed_dim = rot_dim / 2;
  dispatch_float_types(dtype, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t t = 0; t < num_tokens; ++t) {
      const T* cos = static_cast<const T*>(cos_sin_cache) + positions[t] * rot_dim;
      const T* sin = cos + embed_dim;
      rotate_heads(static_cast<T*>(query) + t * query_token_stride, num_heads, query_head_stride, cos, sin,
                   embed_dim, is_neox);
      if (key != nullptr) {
        rotate_heads(static_cast<T*>(key) + t * key_token_stride, num_kv_heads, key_head_stride, cos, sin,
                     embed_dim, is_neox);
      }
    }
  });
  return -1;
}

}  // namespace kernloop::cpu
