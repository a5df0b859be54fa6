#pragma once
/// The quantization vocabulary shared by the ops (eli/ops.h), the caches (eli/cache/) and the
/// Benchmarker: how a tensor of head vectors is quantized (QuantSpec, with the formats and
/// granularities of eli/config.h) and how it is stored (KvStore: codes + scales + minima). The
/// packed layout itself (INT4 packing, code ranges) is written down torch-free in
/// eli/quant_layout.h for the CUDA kernels; the CPU quantizer with its rounding rules is
/// eli/cache/quantize.h. Dependencies point one way: caches -> ops -> this header.

#include <ATen/ATen.h>

#include <cstdint>

#include "eli/config.h"
#include "eli/quant_layout.h"

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

/// One of K or V as stored: values, or codes with their scales and minima. Rows [..., D]; in a
/// cache [B, H, T, ..] (contiguous) or [num_blocks, H, block_size, ..] (paged).
struct KvStore {
  /// bits 16: [.., D] fp16/fp32 values; bits 8: [.., D] int8 (symmetric) or uint8 (zero-point);
  /// bits 4: [.., D/2] uint8 (element 2j in the low nibble of byte j).
  at::Tensor data;
  at::Tensor scales;  // [.., G] fp16 (G = 1 per_token_head, D / group_size group); else undefined
  at::Tensor minima;  // [.., G] fp16 with spec.zero_point; else undefined
  int bits = 16;      // 16 = not quantized; 8 or 4 = quantized per `spec` (spec.bits ignored)
  QuantSpec spec;
  float tensor_scale = 0.f;  // per_tensor: the layer's fp32 scale (> 0)

  /// Storage of unquantized values.
  static KvStore fp(at::Tensor values);
  /// Storage of quantized codes; `spec.bits` gives the width (8 or 4).
  static KvStore quantized(at::Tensor codes, at::Tensor scales, at::Tensor minima,
                           const QuantSpec& spec, float tensor_scale = 0.f);
  /// head_dim implied by data's last dim and bits.
  int64_t head_dim() const;
};

}  // namespace eli::quant
