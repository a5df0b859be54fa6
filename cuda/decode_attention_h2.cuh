#pragma once
/// fp16 fast paths of the fused decode attention (T = __half, quantized operands only):
///  - scores: codes become exact fp16 integers two at a time (INT8: PRMT with 0x64 bytes,
///    INT4: LOP3 with 0x64006400, then one HSUB2/HFMA2 removes 1024 + offset exactly) and
///    q.c runs on the tensor cores (mma.m16n8k16, fp16 products are exact, fp32 accumulation),
///    so the logits keep fp32 quality. Used for INT8 K. INT4 K (either dtype) goes through
///    scores_dp4a (decode_attention.cuh, integer dot products); through this mma it measured
///    slower on an H100 (166.5 us vs ~157 us at B=32, 8192, D=64), and so did q.c on the integer
///    tensor cores (mma.m16n8k32 u8 x s8, q split in three int8 parts, exact sums): K phase 84
///    us vs 64 us on the fp32 path (docs/KERNELS.md);
///  - values: the same exact fp16 codes, p*s*c accumulated in half2 over the unrolled tokens of
///    one iteration (<= 4 products, relative error ~2^-11), then added into fp32 accumulators.
///    Symmetric V only: with a zero point, s * c and the minimum cancel and the fp16 products
///    broke the fp16 output tolerance (|diff| 7.6e-3 at 0.46), so zero-point V stays in fp32.

#include "common.cuh"

#ifndef ELI_ATTN_MMA_SCALES_EARLY
#define ELI_ATTN_MMA_SCALES_EARLY 1  // timing knob: 0 loads scores_mma's scales after the mma
#endif

namespace eli::cuda::detail {

constexpr int kAttnThreads = 128;
constexpr int kAttnUnroll = 4;
constexpr int kMaxSplitLen = 1024;
/// The slot rows of a split (s_row) are padded to a multiple of this: the longest stride of the
/// token loops (dp4a scores at D = 64: 64 rows x 4 unrolled; values_mma: 4 warps x 64).
constexpr int kRowPad = 256;
static_assert(kMaxSplitLen % kRowPad == 0, "a padded split fits s_row");
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

/// Scores of the n slots of one split (rows in s_row, token start + i) into s_logit[i] (log2
/// domain) with tensor cores.
/// Warp w takes tiles of 16 tokens; lane (g = lane / 4, i = lane % 4) feeds rows (tokens) g and
/// g + 8 with the 8-element units 4 s + i of slice s (32 elements: every group of 32, 64 or D
/// holds whole slices, so one mma never mixes two scales). B = q in every column, hence every
/// C column holds the same dot: c[0] for token g, c[2] for token g + 8.
template <int kD, Format FK>
__device__ __forceinline__ void scores_mma(const DecodeAttentionParams& p, const uint32_t* s_row,
                                           int b, int64_t bh, int start, int n, float qscale,
                                           float* s_logit) {
  static_assert(FK == Format::kInt8 || FK == Format::kInt4, "quantized K only");
  constexpr int kSlices = kD / 32;
  constexpr int kWords = FK == Format::kInt8 ? 2 : 1;  // 32-bit words per 8-element unit
  constexpr int kRowBytes = Storage<FK, __half>::row_bytes(kD);
  constexpr int kTiles = 2;  // 16-token tiles per warp and iteration
  constexpr int kWarps = kAttnThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, li = lane % 4;
  const QuantView& kv = p.k;
  const uint8_t* data = static_cast<const uint8_t*>(kv.data);
  const bool per_tensor = kv.tensor_scale > 0.f;
  const __half* scales = per_tensor ? nullptr : static_cast<const __half*>(kv.scales);
  const __half* minima = per_tensor ? nullptr : static_cast<const __half*>(kv.minima);
  const int groups = per_tensor ? 1 : kD / kv.group;
  const int slices_per_group = per_tensor ? kSlices : kv.group / 32;
  const HalfDecoder dec = HalfDecoder::make(FK, kv.minima != nullptr);

  // B fragments: the q elements matching this lane's A elements, and q sums per slice.
  const __half* q = static_cast<const __half*>(p.q) + bh * kD;
  uint32_t qb[kSlices][2][2];
  float qsum[kSlices];
#pragma unroll
  for (int s = 0; s < kSlices; ++s) {
    const int d0 = 32 * s + 8 * li;
    __half e[8];
    float part = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      e[j] = q[d0 + j];
      part += __half2float(e[j]);
    }
    if constexpr (FK == Format::kInt8) {
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        qb[s][m][0] = pack_h2(e[4 * m], e[4 * m + 1]);
        qb[s][m][1] = pack_h2(e[4 * m + 2], e[4 * m + 3]);
      }
    } else {
      qb[s][0][0] = pack_h2(e[0], e[4]);
      qb[s][0][1] = pack_h2(e[2], e[6]);
      qb[s][1][0] = pack_h2(e[1], e[5]);
      qb[s][1][1] = pack_h2(e[3], e[7]);
    }
    part += __shfl_xor_sync(0xffffffffu, part, 1);
    part += __shfl_xor_sync(0xffffffffu, part, 2);
    qsum[s] = part;
  }

  const int half_row = li >> 1;  // this lane finishes token g (0) or g + 8 (1)
  // The scale storage is picked once per block (0: per tensor; 1: one symmetric scale per row,
  // INT8's default, loaded with the codes for the row this lane finishes; 2: anything else,
  // loaded per group where the row is finished). Behind a test per row the loads went out only
  // after the mma, a second memory latency per iteration; holding a scale per slice for the
  // grouped layouts spilled at D = 128, so those keep the late loads.
  auto run = [&](auto mode) {
    constexpr int kMode = decltype(mode)::value;
    for (int base = warp * 16 * kTiles; base < n; base += kWarps * 16 * kTiles) {
      uint32_t raw[kTiles][2][kSlices][kWords];
      __half ks_at[kTiles];
#pragma unroll
      for (int u = 0; u < kTiles; ++u) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          // Slots past the end hold the last row (s_row padding); their logits are not written.
          const uint32_t row = s_row[base + 16 * u + g + 8 * r];
          const uint8_t* src = data + size_t(row) * kRowBytes;
#pragma unroll
          for (int s = 0; s < kSlices; ++s) {
            const int unit = 4 * s + li;
            if constexpr (kWords == 2) {
              const uint2 v = __ldg(reinterpret_cast<const uint2*>(src + 8 * unit));
              raw[u][r][s][0] = v.x;
              raw[u][r][s][1] = v.y;
            } else {
              raw[u][r][s][0] = __ldg(reinterpret_cast<const uint32_t*>(src + 4 * unit));
            }
          }
        }
        if constexpr (kMode == 1) ks_at[u] = scales[s_row[base + 16 * u + g + 8 * half_row]];
      }
#pragma unroll
      for (int u = 0; u < kTiles; ++u) {
        float c[kSlices][4];
#pragma unroll
        for (int s = 0; s < kSlices; ++s) {
          c[s][0] = c[s][1] = c[s][2] = c[s][3] = 0.f;
          if constexpr (FK == Format::kInt8) {
#pragma unroll
            for (int m = 0; m < 2; ++m) {
              uint32_t g01, g23, h01, h23;
              dec.int8(raw[u][0][s][m], g01, g23);
              dec.int8(raw[u][1][s][m], h01, h23);
              mma_16816(c[s], g01, h01, g23, h23, qb[s][m][0], qb[s][m][1]);
            }
          } else {
            uint32_t cg[4], ch[4];
            dec.int4(raw[u][0][s][0], cg);
            dec.int4(raw[u][1][s][0], ch);
            mma_16816(c[s], cg[0], ch[0], cg[2], ch[2], qb[s][0][0], qb[s][0][1]);
            mma_16816(c[s], cg[1], ch[1], cg[3], ch[3], qb[s][1][0], qb[s][1][1]);
          }
        }
        const int i = base + 16 * u + g + 8 * half_row;
        float logit = 0.f, dot = 0.f, qs = 0.f;
#pragma unroll
        for (int s = 0; s < kSlices; ++s) {
          dot += half_row ? c[s][2] : c[s][0];
          qs += qsum[s];
          if ((s + 1) % slices_per_group == 0) {
            float ks = kv.tensor_scale, km = 0.f;
            if constexpr (kMode == 1) ks = __half2float(ks_at[u]);
            if constexpr (kMode == 2) {
              if (!per_tensor) {
                const size_t j = size_t(s_row[i]) * groups + s / slices_per_group;
                ks = __half2float(scales[j]);
                if (minima != nullptr) km = __half2float(minima[j]);
              }
            }
            logit = fmaf(ks, dot, fmaf(km, qs, logit));
            dot = 0.f;
            qs = 0.f;
          }
        }
        logit *= qscale;
        if ((li & 1) == 0 && i < n) {
          if (p.bias != nullptr) logit = fmaf(p.bias[b * p.bias_stride + start + i], kLog2e, logit);
          s_logit[i] = logit;
        }
      }
    }
  };
  if (per_tensor)
    run(std::integral_constant<int, 0>{});
  else if (groups == 1 && minima == nullptr && ELI_ATTN_MMA_SCALES_EARLY)
    run(std::integral_constant<int, 1>{});
  else
    run(std::integral_constant<int, 2>{});
}

/// Values of the n slots of one split (rows in s_row) on the tensor cores, for symmetric INT4 V
/// (per tensor, per token-head or per group of 32 / 64 along D): out[d] = sum_t w_{t,j(d)} c_t[d]
/// with the weights w_{t,j} = p_t s_{t,j} of each scale group j precomputed in fp16 by the
/// softmax pass (`s_w`, one row of w_stride per group, zero past the end up to the padded
/// length: one warp iteration reads 4 tiles of 16). mma.m16n8k16 with A = V^T (16 dimensions x 16
/// tokens) and B = the weights, column n holding group n % groups, fp32 accumulators: the codes
/// are exact fp16 integers and the products exact, so this is more accurate than the half2 path,
/// and one mma replaces 64 HFMA2 plus the fp32 conversions.
///
/// Warp w takes tiles of 16 tokens. Lane (g, i) reads tokens 2i, 2i + 1, 2i + 8, 2i + 9 of a tile
/// and its own D / 8 dimensions (4 or 8 bytes a token, all in one group); PRMT interleaves two
/// tokens' bytes so that one word decodes into half2 (token a, token b) pairs, the A layout. The
/// lane holding column j(d) of rows g and g + 8 writes dimensions g D / 8 + 8 (m / 4) + 2 (m % 4)
/// (+1) of m-tile m to `out` ([kD], this warp's row; the caller adds the warps).
template <int kD>
__device__ __forceinline__ void values_mma(const DecodeAttentionParams& p, const uint32_t* s_row,
                                           int n, int groups, const __half* s_w, int w_stride,
                                           float* out) {
  constexpr int kRowBytes = kD / 2;
  constexpr int kLaneWords = kD / 64;       // 32-bit words of one token per lane (8 dims each)
  constexpr int kMt = kD / 16;              // m-tiles: 4 per word
  constexpr int kTiles = kD == 64 ? 4 : 2;  // 16-token tiles per warp and iteration (<= 4: s_w)
  constexpr int kWarps = kAttnThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, li = lane % 4;
  const uint8_t* data = static_cast<const uint8_t*>(p.v.data) + g * (4 * kLaneWords);
  const HalfDecoder dec = HalfDecoder::make(Format::kInt4, false);
  // B column n = g carries the weights of scale group g % groups; C row r (dimensions of lane
  // group r) belongs to group r * groups / 8, so its column is that group.
  const __half* w_col = s_w + (g % groups) * w_stride;
  float c[kMt][4];
#pragma unroll
  for (int m = 0; m < kMt; ++m) c[m][0] = c[m][1] = c[m][2] = c[m][3] = 0.f;
  for (int base = warp * 16 * kTiles; base < n; base += kWarps * 16 * kTiles) {
    uint32_t raw[kTiles][4][kLaneWords];  // tokens 2i, 2i + 1, 2i + 8, 2i + 9 of each tile
    uint32_t wb[kTiles][2];
#pragma unroll
    for (int u = 0; u < kTiles; ++u) {
      const int i0 = base + 16 * u + 2 * li;
      // Slots past the end hold the last row (s_row padding) and weight 0 (codes are finite).
      const uint2 ra = *reinterpret_cast<const uint2*>(s_row + i0);
      const uint2 rb = *reinterpret_cast<const uint2*>(s_row + i0 + 8);
      const uint32_t row_of_r[4] = {ra.x, ra.y, rb.x, rb.y};
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const uint8_t* src = data + size_t(row_of_r[r]) * kRowBytes;
        if constexpr (kLaneWords == 1) {
          raw[u][r][0] = __ldg(reinterpret_cast<const uint32_t*>(src));
        } else {
          const uint2 v = __ldg(reinterpret_cast<const uint2*>(src));
          raw[u][r][0] = v.x;
          raw[u][r][1] = v.y;
        }
      }
      wb[u][0] = *reinterpret_cast<const uint32_t*>(w_col + i0);
      wb[u][1] = *reinterpret_cast<const uint32_t*>(w_col + i0 + 8);
    }
#pragma unroll
    for (int u = 0; u < kTiles; ++u) {
#pragma unroll
      for (int w = 0; w < kLaneWords; ++w) {
        // Pair a = tokens (2i, 2i + 1), pair b = (2i + 8, 2i + 9): bytes 0-1 and 2-3 of each.
        // [h][j]: dimension 4 h + j of the word (h = 0: bytes 0-1 of both tokens, 1: bytes 2-3).
        uint32_t pa[2][4], pb[2][4];
        dec.int4(__byte_perm(raw[u][0][w], raw[u][1][w], 0x5410u), pa[0]);
        dec.int4(__byte_perm(raw[u][0][w], raw[u][1][w], 0x7632u), pa[1]);
        dec.int4(__byte_perm(raw[u][2][w], raw[u][3][w], 0x5410u), pb[0]);
        dec.int4(__byte_perm(raw[u][2][w], raw[u][3][w], 0x7632u), pb[1]);
#pragma unroll
        for (int ml = 0; ml < 4; ++ml) {
          const int h = ml / 2, j = 2 * (ml % 2);  // dimensions 2 ml and 2 ml + 1
          mma_16816(c[4 * w + ml], pa[h][j], pa[h][j + 1], pb[h][j], pb[h][j + 1], wb[u][0],
                    wb[u][1]);
        }
      }
    }
  }
  // Lane (g, i) holds C columns 2 i and 2 i + 1 of rows g and g + 8.
  const int grp = g * groups / 8;
  if (li == grp / 2) {
    // Selects, not c[m][col]: a runtime index puts the accumulators in local memory (a 128-byte
    // stack frame at D = 128, measured INT4 133 -> 145 us at B = 32, 8192 on an H100).
    const bool odd = grp % 2;
#pragma unroll
    for (int m = 0; m < kMt; ++m) {
      const int d = g * (kD / 8) + 8 * (m / 4) + 2 * (m % 4);
      out[d] = odd ? c[m][1] : c[m][0];
      out[d + 1] = odd ? c[m][3] : c[m][2];
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
