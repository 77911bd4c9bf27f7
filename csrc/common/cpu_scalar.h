// Torch-free 16-bit float storage types for the CPU kernels, with bit-exact round-to-nearest-even
// conversions (the same results as c10::Half / c10::BFloat16). Arithmetic is done in float.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "common/dtype.h"

namespace kernloop::cpu {

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

namespace detail {
inline float f32_from_bits(uint32_t w) {
  float f;
  std::memcpy(&f, &w, sizeof f);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t w;
  std::memcpy(&w, &f, sizeof w);
  return w;
}
}  // namespace detail

inline float to_float(float v) { return v; }

// IEEE half -> float (exact), the branch-light form used by the FP16 library and c10.
inline float to_float(Half h) {
  const uint32_t w = static_cast<uint32_t>(h.bits) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = 0xE0u << 23;
  const float exp_scale = 0x1.0p-112f;
  const float normalized = detail::f32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
  const uint32_t magic_mask = 126u << 23;
  const float denormalized = detail::f32_from_bits((two_w >> 17) | magic_mask) - 0.5f;
  const uint32_t denormalized_cutoff = 1u << 27;
  const uint32_t result =
      sign | (two_w < denormalized_cutoff ? detail::f32_to_bits(denormalized) : detail::f32_to_bits(normalized));
  return detail::f32_from_bits(result);
}

inline float to_float(BFloat16 b) { return detail::f32_from_bits(static_cast<uint32_t>(b.bits) << 16); }

template <typename T>
T from_float(float f);

template <>
inline float from_float<float>(float f) {
  return f;
}

// float -> IEEE half, round to nearest even, NaN/Inf/subnormals handled (needs IEEE float math,
// so never build this with -ffast-math).
template <>
inline Half from_float<Half>(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  const uint32_t w = detail::f32_to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = detail::f32_from_bits((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = detail::f32_to_bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return Half{static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign))};
}

template <>
inline BFloat16 from_float<BFloat16>(float f) {
  if (std::isnan(f)) return BFloat16{0x7FC0};
  const uint32_t u = detail::f32_to_bits(f);
  const uint32_t rounding_bias = 0x7FFFu + ((u >> 16) & 1u);
  return BFloat16{static_cast<uint16_t>((u + rounding_bias) >> 16)};
}

// Round a float to T's precision and back: the value a T would hold.
template <typename T>
inline float round_to(float f) {
  return to_float(from_float<T>(f));
}

// Calls fn(T{}) with T = float, Half or BFloat16 for dtype.
template <typename Fn>
inline void dispatch_float_types(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      std::forward<Fn>(fn)(float{});
      return;
    case DType::kFloat16:
      std::forward<Fn>(fn)(Half{});
      return;
    case DType::kBFloat16:
      std::forward<Fn>(fn)(BFloat16{});
      return;
  }
}

}  // namespace kernloop::cpu
