#pragma once
/// CPU/ATen reference of the KV quantization codecs: the specification the CUDA kernels match.
/// Storage follows eli/quant.h and eli/quant_layout.h exactly; this header adds the rounding
/// rules:
///   - x is first converted to fp32; codes are round-half-to-even(x / s) (division, not
///     multiplication by a reciprocal), then clamped to the code range.
///   - scales are rounded to fp16 *upwards* (the smallest fp16 >= the fp32 scale) and minima
///     *downwards* (the largest fp16 <= the fp32 minimum), so every element stays inside the
///     representable range and |x - x'| <= s/2 holds with the stored fp16 s and m.
///   - a scale below eps is raised to eps before rounding; scales above 65504 are clamped.

#include <ATen/ATen.h>

#include <cstdint>

#include "eli/quant.h"

namespace eli::quant {

/// Quantizes x [..., D] (any float dtype/device) into fresh storage (data = codes, scales,
/// minima; bits, spec and tensor_scale set). per_tensor uses `tensor_scale` (fp32, > 0) and
/// clamps elements outside +-qmax*tensor_scale.
KvStore quantize(const at::Tensor& x, const QuantSpec& spec, float tensor_scale = 0.0f);
/// Returns x' [..., D] as fp32 from quantized storage (its spec, bits and tensor_scale).
at::Tensor dequantize(const KvStore& q);

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
