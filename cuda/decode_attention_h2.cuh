#pragma once
/// fp16 fast paths of the fused decode attention (T = __half, quantized operands only):
///  - scores (INT8 and INT4 K): q.c on the integer tensor cores (scores_imma below), the codes
///    used as stored bytes and q split into three int8 parts, exact integer sums;
///  - values: the same exact fp16 codes, p*s*c accumulated in half2 over the unrolled tokens of
///    one iteration (<= 4 products, relative error ~2^-11), then added into fp32 accumulators.
///    Symmetric V only: with a zero point, s * c and the minimum cancel and the fp16 products
///    broke the fp16 output tolerance (|diff| 7.6e-3 at 0.46), so zero-point V stays in fp32.

#include "common.cuh"

namespace eli::cuda::detail {

constexpr int kAttnThreads = 128;
constexpr int kAttnUnroll = 4;
constexpr int kMaxSplitLen = 1024;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ __half2 u2h2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }
__device__ __forceinline__ uint32_t h22u(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ uint32_t pack_h2(__half lo, __half hi) {
  return h22u(__halves2half2(lo, hi));
}

/// C += A B for one m16n8k16 tile (A row-major 16x16 f16, B col-major 16x8 f16, C f32).
__device__ __forceinline__ void mma_16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// Exact fp16 codes from INT8/INT4 words. `off` is the code offset (INT8 sym 128, INT4 sym 8,
/// asym 0); `flip` xors INT8 words (0x80808080 for signed codes).
struct HalfDecoder {
  uint32_t flip;
  __half2 sub;    // 1024 + off
  __half2 sub16;  // -(64 + off), for the x16 nibbles: (1024 + 16 n) / 16 - 64 - off
  static __device__ HalfDecoder make(Format f, bool zero_point) {
    const int off = zero_point ? 0 : (f == Format::kInt8 ? 128 : 8);
    HalfDecoder d;
    d.flip = (f == Format::kInt8 && !zero_point) ? 0x80808080u : 0u;
    d.sub = __float2half2_rn(1024.f + off);
    d.sub16 = __float2half2_rn(-(64.f + off));
    return d;
  }
  /// INT8 word -> (c0, c1), (c2, c3).
  __device__ __forceinline__ void int8(uint32_t w, uint32_t& c01, uint32_t& c23) const {
    const uint32_t x = w ^ flip;
    c01 = h22u(__hsub2(u2h2(__byte_perm(x, 0x64646464u, 0x4140u)), sub));
    c23 = h22u(__hsub2(u2h2(__byte_perm(x, 0x64646464u, 0x4342u)), sub));
  }
  /// INT4 word (element 2j in the low nibble of byte j) -> (c0, c4), (c1, c5), (c2, c6),
  /// (c3, c7).
  __device__ __forceinline__ void int4(uint32_t w, uint32_t (&c)[4]) const {
    const __half2 sixteenth = __float2half2_rn(0.0625f);
    const uint32_t w8 = w >> 8;
    c[0] = h22u(__hsub2(u2h2((w & 0x000F000Fu) | 0x64006400u), sub));
    c[1] = h22u(__hfma2(u2h2((w & 0x00F000F0u) | 0x64006400u), sixteenth, sub16));
    c[2] = h22u(__hsub2(u2h2((w8 & 0x000F000Fu) | 0x64006400u), sub));
    c[3] = h22u(__hfma2(u2h2((w8 & 0x00F000F0u) | 0x64006400u), sixteenth, sub16));
  }
};

/// C += A B for one m16n8k32 tile (A u8 row-major 16x32, B s8 col-major 32x8, C s32).
__device__ __forceinline__ void imma_16832(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                           uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/// Scores of tokens [start, end) of one (b, h) into s_logit (log2 domain) on the integer tensor
/// cores, straight from the stored bytes: K codes are the u8 A operand (INT8 as stored, xor 0x80
/// for signed codes; INT4 as two nibble masks per word, 3 ops per 8 codes), and q is the s8 B
/// operand split into three int8 parts, q = sq (q0 + q1 / 254 + q2 / 254^2) with sq = max|q| / 127
/// (error < 1e-7 max|q|: well below the fp16 rounding of q itself). The integer sums are exact,
/// so the logits keep fp32 quality.
///
/// Warp w takes tiles of 16 tokens; lane (g = lane / 4, i = lane % 4) feeds rows (tokens) g and
/// g + 8 with its own D / 4 contiguous dimensions (8 to 32 bytes: one or two vector loads per
/// token). Those dimensions lie in one scale group (groups are 32, 64 or D). B column n of column
/// set s holds part n % 4 (< 3) of q restricted to group 2 s + n / 4, so C column (2 i, 2 i + 1)
/// of set s gives lane i the group-(2 s + i / 2) dot products of parts 2 (i % 2) and
/// 2 (i % 2) + 1 for both of its tokens; scale, zero point and the code offset are applied per
/// lane and the four lanes of a token add up with two shuffles. D = 128 with 32-element groups
/// (G = 4) uses a second column set.
template <int kD, Format FK>
__device__ __forceinline__ void scores_imma(const DecodeAttentionParams& p, const RowCursor& rows,
                                            int b, int64_t bh, int start, int end, float qscale,
                                            float* s_logit) {
  static_assert(FK == Format::kInt8 || FK == Format::kInt4, "quantized K only");
  constexpr bool kInt4 = FK == Format::kInt4;
  constexpr int kRowBytes = Storage<FK, __half>::row_bytes(kD);
  constexpr int kLaneBytes = kRowBytes / 4;  // 8, 16 or 32
  constexpr int kLaneWords = kLaneBytes / 4;
  constexpr int kLaneDims = kD / 4;
  constexpr int kSteps = kInt4 ? kLaneWords : kLaneWords / 2;  // k32 mma steps per token
  constexpr int kSets = kD == 128 ? 2 : 1;                      // column sets (G <= 2 per set)
  constexpr int kTiles = kD == 64 ? 4 : 2;  // 16-token tiles per warp and iteration
  constexpr int kWarps = kAttnThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, li = lane % 4;
  const QuantView& kv = p.k;
  const uint8_t* data = static_cast<const uint8_t*>(kv.data);
  const bool per_tensor = kv.tensor_scale > 0.f;
  const __half* scales = per_tensor ? nullptr : static_cast<const __half*>(kv.scales);
  const __half* minima = per_tensor ? nullptr : static_cast<const __half*>(kv.minima);
  const int group_size = per_tensor ? kD : kv.group;
  const int groups = kD / group_size;
  const int sets = groups > 2 ? 2 : 1;
  const uint32_t flip = (!kInt4 && minima == nullptr) ? 0x80808080u : 0u;
  const int off = minima != nullptr ? 0 : (kInt4 ? 8 : 128);

  // ---- q: three int8 parts of this lane's dimensions, B fragments and per-group sums
  const int lane_group = li * kLaneDims / group_size;
  const __half* q = static_cast<const __half*>(p.q) + bh * kD + li * kLaneDims;
  float qf[kLaneDims];
  float amax = 0.f;
#pragma unroll
  for (int d = 0; d < kLaneDims; d += 2) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(q + d));
    qf[d] = f.x;
    qf[d + 1] = f.y;
    amax = fmaxf(amax, fmaxf(fabsf(f.x), fabsf(f.y)));
  }
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  const float sq = amax / 127.f;
  uint32_t qb[kSets][kSteps][2];
#pragma unroll
  for (int s = 0; s < kSets; ++s)
#pragma unroll
    for (int m = 0; m < kSteps; ++m) qb[s][m][0] = qb[s][m][1] = 0u;
  int psum[3] = {0, 0, 0};
  float fsum = 0.f;
  const int my_part = g % 4;  // the part this lane's B column holds (3: none)
#pragma unroll
  for (int d = 0; d < kLaneDims; ++d) {
    const float x = qf[d] * inv;
    const float x0 = rintf(x);
    const float r1 = (x - x0) * 254.f;
    const float x1 = rintf(r1);
    const float x2 = rintf((r1 - x1) * 254.f);
    const int part[3] = {int(x0), int(x1), int(x2)};
    psum[0] += part[0];
    psum[1] += part[1];
    psum[2] += part[2];
    fsum += qf[d];
    const int v = my_part == 0 ? part[0] : my_part == 1 ? part[1] : my_part == 2 ? part[2] : 0;
    // Where dimension d sits in the A operand: k32 step m, half hf (a0/a2), byte jj.
    const int m = d / 8;
    const int hf = kInt4 ? d % 2 : (d / 4) % 2;
    const int jj = kInt4 ? (d % 8) / 2 : d % 4;
#pragma unroll
    for (int s = 0; s < kSets; ++s) {
      if (2 * s + g / 4 == lane_group)
        qb[s][m][hf] |= (uint32_t(v) & 0xFFu) << (8 * jj);
    }
  }
  // Sums over each group: lanes of one group are adjacent (group_size / kLaneDims of them).
  const int lanes_per_group = group_size / kLaneDims;
  if (lanes_per_group >= 2) {
#pragma unroll
    for (int k = 0; k < 3; ++k) psum[k] += __shfl_xor_sync(0xffffffffu, psum[k], 1);
    fsum += __shfl_xor_sync(0xffffffffu, fsum, 1);
  }
  if (lanes_per_group >= 4) {
#pragma unroll
    for (int k = 0; k < 3; ++k) psum[k] += __shfl_xor_sync(0xffffffffu, psum[k], 2);
    fsum += __shfl_xor_sync(0xffffffffu, fsum, 2);
  }
  // Per column set: this lane's group, the weights of its two C columns (parts 2 (i % 2) + k),
  // the code-offset terms and the zero-point sum.
  float wgt[kSets][2], oq[kSets][2], qz[kSets];
  bool has[kSets];
  const float part_w[4] = {sq, sq / 254.f, sq / (254.f * 254.f), 0.f};
#pragma unroll
  for (int s = 0; s < kSets; ++s) {
    const int j = 2 * s + li / 2;
    has[s] = j < groups;
    const int src = (lane & ~3) | ((has[s] ? j : 0) * lanes_per_group);
    int ps[3];
#pragma unroll
    for (int k = 0; k < 3; ++k) ps[k] = __shfl_sync(0xffffffffu, psum[k], src);
    const float fs = __shfl_sync(0xffffffffu, fsum, src);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int pk = 2 * (li % 2) + k;
      wgt[s][k] = has[s] ? part_w[pk] : 0.f;
      oq[s][k] = pk < 3 ? float(off * ps[pk < 3 ? pk : 0]) : 0.f;
    }
    qz[s] = (has[s] && li % 2 == 0) ? fs : 0.f;
  }

  for (int base = start + warp * 16 * kTiles; base < end; base += kWarps * 16 * kTiles) {
    uint32_t raw[kTiles][2][kLaneWords];
    float sc[kTiles][2][kSets], mn[kTiles][2][kSets];
#pragma unroll
    for (int u = 0; u < kTiles; ++u) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        // Tokens past the end read the last row (no branch); their logits are not written.
        {
          const int64_t row = rows.row(min(base + 16 * u + g + 8 * r, end - 1));
          const uint8_t* src = data + row * kRowBytes + li * kLaneBytes;
          if constexpr (kLaneBytes == 8) {
            const uint2 v = __ldg(reinterpret_cast<const uint2*>(src));
            raw[u][r][0] = v.x;
            raw[u][r][1] = v.y;
          } else {
#pragma unroll
            for (int c = 0; c < kLaneBytes / 16; ++c) {
              const uint4 v = __ldg(reinterpret_cast<const uint4*>(src) + c);
              raw[u][r][4 * c] = v.x;
              raw[u][r][4 * c + 1] = v.y;
              raw[u][r][4 * c + 2] = v.z;
              raw[u][r][4 * c + 3] = v.w;
            }
          }
#pragma unroll
          for (int s = 0; s < kSets; ++s) {
            sc[u][r][s] = mn[u][r][s] = 0.f;
            if (has[s]) {
              if (per_tensor) {
                sc[u][r][s] = kv.tensor_scale;
              } else {
                const int64_t i = row * groups + 2 * s + li / 2;
                sc[u][r][s] = __half2float(scales[i]);
                if (minima != nullptr) mn[u][r][s] = __half2float(minima[i]);
              }
            }
          }
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kTiles; ++u) {
      int c[kSets][4];
#pragma unroll
      for (int s = 0; s < kSets; ++s) c[s][0] = c[s][1] = c[s][2] = c[s][3] = 0;
#pragma unroll
      for (int m = 0; m < kSteps; ++m) {
        uint32_t a0, a1, a2, a3;
        if constexpr (kInt4) {
          a0 = raw[u][0][m] & 0x0F0F0F0Fu;
          a2 = (raw[u][0][m] >> 4) & 0x0F0F0F0Fu;
          a1 = raw[u][1][m] & 0x0F0F0F0Fu;
          a3 = (raw[u][1][m] >> 4) & 0x0F0F0F0Fu;
        } else {
          a0 = raw[u][0][2 * m] ^ flip;
          a2 = raw[u][0][2 * m + 1] ^ flip;
          a1 = raw[u][1][2 * m] ^ flip;
          a3 = raw[u][1][2 * m + 1] ^ flip;
        }
        imma_16832(c[0], a0, a1, a2, a3, qb[0][m][0], qb[0][m][1]);
        if (kSets == 2 && sets == 2) imma_16832(c[kSets - 1], a0, a1, a2, a3, qb[kSets - 1][m][0],
                                                qb[kSets - 1][m][1]);
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float part = 0.f;
#pragma unroll
        for (int s = 0; s < kSets; ++s) {
          const float v = fmaf(wgt[s][0], float(c[s][2 * r]) - oq[s][0],
                               wgt[s][1] * (float(c[s][2 * r + 1]) - oq[s][1]));
          part = fmaf(sc[u][r][s], v, fmaf(mn[u][r][s], qz[s], part));
        }
        part += __shfl_xor_sync(0xffffffffu, part, 1);
        part += __shfl_xor_sync(0xffffffffu, part, 2);
        const int t = base + 16 * u + g + 8 * r;
        if (li == r && t < end) {
          float logit = part * qscale;
          if (p.bias != nullptr) logit = fmaf(p.bias[b * p.bias_stride + t], kLog2e, logit);
          s_logit[t - start] = logit;
        }
      }
    }
  }
}

/// V side: exact fp16 codes of one 16-byte vector as half2 pairs. INT8 pair 2 i + j holds
/// elements (4 i + 2 j, 4 i + 2 j + 1); INT4 pair 4 i + j holds (8 i + j, 8 i + 4 + j).
template <Format F>
__device__ __forceinline__ void decode_vec_h2(
    const uint4& v, const HalfDecoder& dec, uint32_t (&out)[Storage<F, __half>::kElemsPerVec / 2]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (F == Format::kInt8) {
      dec.int8(w[i], out[2 * i], out[2 * i + 1]);
    } else {
      uint32_t c[4];
      dec.int4(w[i], c);
#pragma unroll
      for (int j = 0; j < 4; ++j) out[4 * i + j] = c[j];
    }
  }
}

/// Element indices (lo, hi) of pair k produced by decode_vec_h2.
template <Format F>
__host__ __device__ constexpr int pair_lo(int k) {
  return F == Format::kInt8 ? 2 * k : 8 * (k / 4) + k % 4;
}
template <Format F>
__host__ __device__ constexpr int pair_hi(int k) {
  return F == Format::kInt8 ? 2 * k + 1 : 8 * (k / 4) + 4 + k % 4;
}

}  // namespace eli::cuda::detail
