#pragma once
/// CPU/ATen reference of the KV quantization codecs: the specification the CUDA kernels match.
/// Storage follows eli/quant_layout.h exactly; this header adds the rounding rules:
///   - x is first converted to fp32; codes are round-half-to-even(x / s) (division, not
///     multiplication by a reciprocal), then clamped to the code range.
///   - scales are rounded to fp16 *upwards* (the smallest fp16 >= the fp32 scale) and minima
///     *downwards* (the largest fp16 <= the fp32 minimum), so every element stays inside the
///     representable range and |x - x'| <= s/2 holds with the stored fp16 s and m.
///   - a scale below eps is raised to eps before rounding; scales above 65504 are clamped.

#include <ATen/ATen.h>

#include <cstdint>

#include "eli/config.h"

namespace eli::quant {

/// How one tensor of head vectors is quantized.
struct QuantSpec {
  int bits = 8;  // 8 or 4
  Granularity granularity = Granularity::kPerTokenHead;
  int group_size = 32;      // kGroup: 32 or 64, divides head_dim
  bool zero_point = false;  // asymmetric (kGroup / kPerTokenHead only)
  float eps = 1e-8f;        // scale floor
  /// Elements sharing one scale for a row of `head_dim` values.
  int64_t group_width(int64_t head_dim) const;
  /// Scales per row: 1 (per_token_head), head_dim / group_size (group), 0 (per_tensor).
  int64_t groups(int64_t head_dim) const;
  /// Bytes of codes per row.
  int64_t code_bytes(int64_t head_dim) const { return bits == 8 ? head_dim : head_dim / 2; }
  /// Throws eli::Error when head_dim does not fit this spec (odd for INT4, group not dividing).
  void check(int64_t head_dim) const;
};

/// A quantized tensor of rows [..., D].
struct QTensor {
  at::Tensor
      codes;  // [..., D] int8 (symmetric INT8) / uint8 (asymmetric INT8); [..., D/2] uint8 (INT4)
  at::Tensor
      scales;  // [..., G] fp16; undefined for per_tensor (the scale is a caller's fp32 scalar)
  at::Tensor minima;  // [..., G] fp16; only with zero_point
};

/// Quantizes x [..., D] (any float dtype/device). per_tensor uses `tensor_scale` (fp32, > 0) and
/// clamps elements outside +-qmax*tensor_scale.
QTensor quantize(const at::Tensor& x, const QuantSpec& spec, float tensor_scale = 0.0f);
/// Returns x' [..., D] as fp32.
at::Tensor dequantize(const QTensor& q, const QuantSpec& spec, float tensor_scale = 0.0f);

/// The per_tensor scale for an absolute maximum: max(absmax / qmax, eps), clamped to fp16 max.
float tensor_scale_for(float absmax, const QuantSpec& spec);
/// Re-expresses symmetric codes (per_tensor) quantized with scale `from` under scale `to`
/// (to >= from): code' = round(code * from / to). Works in place on INT8 codes or packed INT4.
void rescale_codes_(at::Tensor& codes, int bits, float from, float to);

/// nibbles [..., D] uint8 in 0..15 (D even) -> [..., D/2] uint8 (element 2j low, 2j+1 high).
at::Tensor pack_int4(const at::Tensor& nibbles);
/// [..., D/2] uint8 -> [..., D] uint8 nibbles.
at::Tensor unpack_int4(const at::Tensor& packed);

/// fp32 tensor -> fp16 rounded towards +inf / -inf (see above).
at::Tensor to_half_up(const at::Tensor& x);
at::Tensor to_half_down(const at::Tensor& x);

/// Orthonormal Sylvester-Hadamard matrix [d, d] fp32 (d a power of 2); symmetric, H @ H = I.
at::Tensor hadamard(int64_t d, at::Device device);

}  // namespace eli::quant
