#pragma once
/// The one written-down storage layout of quantized KV data, shared by the CPU codecs
/// (include/eli/cache/) and the CUDA kernels (cuda/). Torch-free so cuda/ can include it.
///
/// Element quantization (x = one fp value, s = scale, m = minimum; all scales/minima fp16):
///   format           code                                       scale s          value x'
///   INT8 symmetric   int8  = clamp(round(x / s), -127, 127)     absmax / 127     code * s
///   INT8 asymmetric  uint8 = clamp(round((x - m) / s), 0, 255)  (max - m) / 255  code * s + m
///   INT4 symmetric   nibble = clamp(round(x / s), -7, 7) + 8    absmax / 7       (nibble - 8) * s
///   INT4 asymmetric  nibble = clamp(round((x - m) / s), 0, 15)  (max - m) / 15   nibble * s + m
/// Scales are rounded to fp16 *before* the codes are computed, so |x - x'| <= s/2 holds for the
/// stored s. A scale below `eps` is raised to eps; an fp16 scale of 0 gives all-zero codes.
///
/// INT4 packing: byte j of a row of D values holds element 2j in the low nibble and element
/// 2j+1 in the high nibble (D must be even). See PackedInt4 below.
///
/// Tensor shapes (B batch, H heads, T token slots, D head_dim, G = D / group_size):
///   codes   : INT8 [B, H, T, D] (int8 or uint8), INT4 [B, H, T, D/2] uint8
///   scales  : per_token_head [B, H, T, 1] fp16; group [B, H, T, G] fp16;
///             per_tensor one fp32 scalar per (layer, K|V) (see docs/CACHES.md)
///   minima  : same shape as scales, only for asymmetric (zero-point) groups
/// Paged storage replaces [B, H, T, ...] by a block pool [num_blocks, H, block_size, ...] and a
/// block table [B, max_blocks] int32 (logical block i of sequence b lives in pool block
/// table[b][i]); token t of sequence b is slot t % block_size of block table[b][t / block_size].

#include <cstdint>

namespace eli::quant {

/// Two INT4 codes in one byte: low nibble = even element, high nibble = odd element.
struct PackedInt4 {
  uint8_t bits;
  static constexpr PackedInt4 pack(uint8_t even, uint8_t odd) {
    return PackedInt4{static_cast<uint8_t>((even & 0xF) | ((odd & 0xF) << 4))};
  }
  constexpr uint8_t even() const { return bits & 0xF; }
  constexpr uint8_t odd() const { return bits >> 4; }
};
static_assert(sizeof(PackedInt4) == 1, "INT4 pair must be one byte");

constexpr int kInt8SymMax = 127;
constexpr int kInt4SymMax = 7;
constexpr int kInt4Offset = 8;
constexpr int kInt8AsymLevels = 255;
constexpr int kInt4AsymLevels = 15;

}  // namespace eli::quant
