#pragma once
/// The score loops of the decode attention: logit_i = (q . k_i) * sm_scale * log2(e) (+ bias)
/// for the n slots of one split, into shared memory (s_logit, log2 domain). One loop per way of
/// computing q . k: fp32 (any format), integer dot products (INT4 K), tensor cores (INT8 K,
/// fp16 q). The kernel picks one at compile time (decode_attention.cuh).

#include "operand.cuh"

namespace eli::cuda::detail {

/// The sum of a row's kTpr threads' partial dots (in every one of them).
template <int kTpr>
__device__ __forceinline__ float row_sum(float logit) {
#pragma unroll
  for (int off = kTpr / 2; off >= 1; off /= 2) logit += __shfl_xor_sync(0xffffffffu, logit, off);
  return logit;
}

/// Adds the partial dots of a row's kTpr threads; the row's first thread adds the bias and
/// stores the logit of slot i (log2 domain) unless i is past the end.
template <int kTpr>
__device__ __forceinline__ void store_logit(const DecodeAttentionParams& p, int b, int start, int n,
                                            int i, int lane_in_row, float logit, float* s_logit) {
  logit = row_sum<kTpr>(logit);
  if (lane_in_row == 0 && i < n) {
    if (p.bias != nullptr) logit = fmaf(p.bias[b * p.bias_stride + start + i], kLog2e, logit);
    s_logit[i] = logit;
  }
}

/// store_logit without the bias, for a score loop whose bias the softmax pass adds (once per
/// slot, and only when there is one: kBiasInSoftmax).
template <int kTpr>
__device__ __forceinline__ void store_logit_nobias(int n, int i, int lane_in_row, float logit,
                                                   float* s_logit) {
  logit = row_sum<kTpr>(logit);
  if (lane_in_row == 0 && i < n) s_logit[i] = logit;
}

/// Scores of any K format through fp32: each thread decodes its 16-byte vector of a row
/// (decode_vec: codes as exact fp32 integers) and dots it with its q slice; kTpr threads per
/// row. The path of fp K, and of INT8 K in fp32.
template <typename T, int kD, Format FK>
__device__ __forceinline__ void scores_fp32(const DecodeAttentionParams& p, const uint32_t* s_row,
                                            int b, int64_t bh, int start, int n, float qscale,
                                            float* s_logit) {
  using Tile = RowTiling<T, kD, FK>;
  constexpr int kEK = Tile::kElems, kTprK = Tile::kTpr, kRowsK = Tile::kRows;
  constexpr int kRowBytesK = Tile::kRowBytes;
  const int tid = threadIdx.x;
  const int lk = tid % kTprK, rk = tid / kTprK;
  const OperandReader<FK> rd(p.k, kD, lk * kEK);
  const uint8_t* data = rd.data + lk * 16;
  const T* q = static_cast<const T*>(p.q) + bh * kD + lk * kEK;
  float qf[kEK];
  float qsum = 0.f;
#pragma unroll
  for (int i = 0; i < kEK; ++i) {
    qf[i] = to_float(q[i]) * qscale;
    qsum += qf[i];
  }
  for_each_rows<kRowsK, kRowBytesK>(
      rd, data, s_row, n, rk,
      [&](int i0, const uint4(&raw)[kAttnUnroll], const float(&ks)[kAttnUnroll],
          const float(&km)[kAttnUnroll]) {
#pragma unroll
        for (int u = 0; u < kAttnUnroll; ++u) {
          float c[kEK];
          decode_vec<FK, T>(raw[u], rd.dec, c);
          float dot = 0.f;
#pragma unroll
          for (int i = 0; i < kEK; ++i) dot = fmaf(qf[i], c[i], dot);
          store_logit<kTprK>(p, b, start, n, i0 + u * kRowsK + rk, lk,
                             fmaf(ks[u], dot, km[u] * qsum), s_logit);
        }
      });
}

/// Byte planes of q's fixed point in scores_dp4a: fp16 q (T = __half) in 16 bits, fp32 q in 24.
/// Against the slice's largest |q|, 16 bits move each element by at most 2^-16 of that largest
/// value, so a logit moves by ~2^-16 of sum |q_i k_i| (an lse by up to 5.5e-4 at logits of ~20
/// in the GPU tests), far below what INT4 K's own rounding (a step of 1/15 of a group's range)
/// does to it. Two planes take 4 IDP4A a word instead of 6: H200, same-run A/B against 24 bits,
/// INT4 B 32 x 8192 D 64 65.8 -> 61.8 us, B 1 x 32768 16.4 -> 15.6 us, D 128 2% faster.
template <typename T>
constexpr int q_planes() {
  return sizeof(T) == 2 ? 2 : 3;
}

template <int kD>
struct QPlanes {
  /// [slice][k][w][e]: byte plane k of the slice's q elements under word w's even (e = 0) or odd
  /// nibbles (element 8 w + 2 j + e in byte j).
  uint32_t planes[kD / 32][3][4][2];
  float sq[kD / 32];    // q_i ~ sq Q_i
  float qsum[kD / 32];  // sq x sum(Q_i): the rounded slice's sum, for the zero point's share
  float qoff[kD / 32];  // -offset x sum(Q_i): the code offset's share of the dot
};

/// The fixed-point q of scores_dp4a, once per block: warp w (< kD / 32) takes slice w (32
/// elements, one a lane), so the block spends one pass over q instead of every thread redoing
/// its slice's. H200, same-run A/B against every thread converting its own: INT4 B 32 x 8192
/// D 64 70.2 -> 67.4 us, B 1 x 32768 17.3 -> 16.3 us, D 128 1% faster. The caller publishes s
/// with a barrier.
template <typename T, int kD>
__device__ __forceinline__ void prepare_q_dp4a(const DecodeAttentionParams& p, int64_t bh,
                                               float qscale, QPlanes<kD>& s) {
  static_assert(kD / 32 <= kAttnThreads / 32, "a warp per slice");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warp >= kD / 32) return;
  const float qf = to_float(static_cast<const T*>(p.q)[bh * kD + warp * 32 + lane]) * qscale;
  float amax = fabsf(qf);
#pragma unroll
  for (int off = 16; off >= 1; off /= 2)
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  constexpr int kPlanes = q_planes<T>();
  constexpr int kQMaxInt = (1 << (8 * kPlanes - 1)) - 1;  // 2^15 - 1 or 2^23 - 1
  constexpr float kQMax = float(kQMaxInt);
  const float inv = amax > 0.f ? kQMax / amax : 0.f;
  const int v = max(-kQMaxInt, min(kQMaxInt, __float2int_rn(qf * inv)));
  int vsum = v;  // |sum| <= 32 (2^23 - 1) < 2^31
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) vsum += __shfl_xor_sync(0xffffffffu, vsum, off);
  const int w = lane / 8, j = (lane % 8) / 2, e = lane % 2;
#pragma unroll
  for (int k = 0; k < kPlanes; ++k)
    reinterpret_cast<uint8_t*>(&s.planes[warp][k][w][e])[j] = uint8_t((v >> (8 * k)) & 0xFF);
  if (lane == 0) {
    // stored nibble = code + kInt4Offset when symmetric
    const float offset = p.k.minima != nullptr ? 0.f : float(quant::kInt4Offset);
    s.sq[warp] = amax / kQMax;
    s.qsum[warp] = s.sq[warp] * float(vsum);
    s.qoff[warp] = -offset * float(vsum);
  }
}

/// INT4 K scores with integer dot products (IDP4A: four byte products summed per instruction).
/// Each thread owns one 16-byte vector (32 codes) of a row, as in the generic loop. Its q slice
/// (times sm_scale log2 e) becomes fixed point, q_i ~ sq * Q_i: fp32 q in 24 bits, |Q_i| <=
/// 2^23 - 1, three byte planes Q = 65536 Q2 + 256 Q1 + Q0 (Q2 signed); fp16 q in 16 bits, two
/// planes 256 Q1 + Q0 (q_planes). The integer sums are exact and the zero point multiplies the
/// rounded slice's sum, so a logit is exactly the dot product of the rounded q with the stored
/// row: the only error is the rounding of q against its slice's max. The stored nibbles u
/// (0..15) are used as they are: `w & kEvenNibbles` gives the even elements as bytes,
/// `w & kOddNibbles` the odd ones times 16, so one word costs two LOPs and four (fp16) or six
/// (fp32) IDP4A against 8 PRMT + 8 FADD + 8 FFMA + 3 masks on the fp32 path; the code offset (8
/// when symmetric) comes off once per row as offset * sum(Q).
/// The bias of its slots is left to the softmax pass (kBiasInSoftmax): in this loop, the one that
/// issues most, the test and address per row cost ~50 of ~320 instructions an iteration (ncu,
/// H200, B = 32, 8192, D = 64). The fixed-point q comes from the block's one pass over it
/// (prepare_q_dp4a, `qp`).
template <typename T, int kD>
__device__ __forceinline__ void scores_dp4a(const DecodeAttentionParams& p, const uint32_t* s_row,
                                            int n, const QPlanes<kD>& qp, float* s_logit) {
  using Tile = RowTiling<T, kD, Format::kInt4>;
  constexpr int kTpr = Tile::kTpr, kRows = Tile::kRows, kRowBytes = Tile::kRowBytes;
  const int tid = threadIdx.x, lk = tid % kTpr, rk = tid / kTpr;
  const OperandReader<Format::kInt4> rd(p.k, kD, lk * 32);
  constexpr int kPlanes = q_planes<T>();
  uint32_t planes[kPlanes][4][2];
  {
    const uint4* src = reinterpret_cast<const uint4*>(&qp.planes[lk][0][0][0]);
    uint32_t* dst = &planes[0][0][0];
#pragma unroll
    for (int i = 0; i < 2 * kPlanes; ++i) {
      const uint4 v = src[i];
      dst[4 * i] = v.x;
      dst[4 * i + 1] = v.y;
      dst[4 * i + 2] = v.z;
      dst[4 * i + 3] = v.w;
    }
  }
  const float sq = qp.sq[lk], qsum = qp.qsum[lk], qoff = qp.qoff[lk];

  const uint8_t* data = rd.data + lk * 16;
  for_each_rows<kRows, kRowBytes>(
      rd, data, s_row, n, rk,
      [&](int i0, const uint4(&raw)[kAttnUnroll], const float(&ks)[kAttnUnroll],
          const float(&km)[kAttnUnroll]) {
#pragma unroll
        for (int u = 0; u < kAttnUnroll; ++u) {
          const uint32_t words[4] = {raw[u].x, raw[u].y, raw[u].z, raw[u].w};
          // Unsigned sums of the low planes, signed of the top one (its byte carries the sign).
          uint32_t lo[kPlanes - 1], lo16[kPlanes - 1];
#pragma unroll
          for (int k = 0; k < kPlanes - 1; ++k) lo[k] = lo16[k] = 0;
          int hi = 0, hi16 = 0;
#pragma unroll
          for (int w = 0; w < 4; ++w) {
            const uint32_t even = words[w] & kEvenNibbles, odd16 = words[w] & kOddNibbles;
#pragma unroll
            for (int k = 0; k < kPlanes - 1; ++k) {
              lo[k] = dp4a_uu(planes[k][w][0], even, lo[k]);
              lo16[k] = dp4a_uu(planes[k][w][1], odd16, lo16[k]);
            }
            hi = dp4a_su(planes[kPlanes - 1][w][0], even, hi);
            hi16 = dp4a_su(planes[kPlanes - 1][w][1], odd16, hi16);
          }
          // Bounds: each lo[k] <= 16 * 255 * 15 and lo16[k] <= 16 * 255 * 240, so the low part
          // (plane 1 shifted by 8 when there are three) < 2^25; the x16 sums are exact
          // multiples of 16.
          uint32_t low = lo[0] + (lo16[0] >> 4);
          if constexpr (kPlanes == 3) low += (lo[1] << 8) + (lo16[1] << 4);
          const int high = hi + (hi16 >> 4);
          constexpr float kHighWeight = kPlanes == 3 ? 65536.f : 256.f;
          const float dot = fmaf(float(high), kHighWeight, float(low)) + qoff;
          store_logit_nobias<kTpr>(n, i0 + u * kRows + rk, lk, fmaf(ks[u] * sq, dot, km[u] * qsum),
                                   s_logit);
        }
      });
}

/// INT8 K scores on the tensor cores (fp16 q; codes become exact fp16 integers two at a time,
/// HalfDecoder; fp16 products are exact and accumulate in fp32, so the logits keep fp32
/// quality). Scores of the n slots of one split (rows in s_row, token start + i) into
/// s_logit[i] (log2 domain). INT4 K through the same mma measured slower than scores_dp4a on an
/// H100 (166.5 us vs ~157 us at B=32, 8192, D=64), and so did q.c on the integer tensor cores
/// (mma.m16n8k32 u8 x s8, q split in three int8 parts: K phase 84 us vs 64 us).
/// Warp w takes tiles of 16 tokens; lane (g = lane / 4, i = lane % 4) feeds rows (tokens) g and
/// g + 8 with the 8-element units 4 s + i of slice s (32 elements: every group of 32, 64 or D
/// holds whole slices, so one mma never mixes two scales). B = q in every column, hence every
/// C column holds the same dot: c[0] for token g, c[2] for token g + 8.
template <int kD>
__device__ __forceinline__ void scores_mma(const DecodeAttentionParams& p, const uint32_t* s_row,
                                           int b, int64_t bh, int start, int n, float qscale,
                                           float* s_logit) {
  constexpr Format FK = Format::kInt8;
  constexpr int kSlices = kD / 32;
  constexpr int kWords = 2;  // 32-bit words per 8-element unit
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
#pragma unroll
    for (int m = 0; m < 2; ++m) {
      qb[s][m][0] = pack_h2(e[4 * m], e[4 * m + 1]);
      qb[s][m][1] = pack_h2(e[4 * m + 2], e[4 * m + 3]);
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
            const uint2 v = __ldg(reinterpret_cast<const uint2*>(src + 8 * unit));
            raw[u][r][s][0] = v.x;
            raw[u][r][s][1] = v.y;
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
#pragma unroll
          for (int m = 0; m < 2; ++m) {
            uint32_t g01, g23, h01, h23;
            dec.int8(raw[u][0][s][m], g01, g23);
            dec.int8(raw[u][1][s][m], h01, h23);
            mma_16816(c[s], g01, h01, g23, h23, qb[s][m][0], qb[s][m][1]);
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
  else if (groups == 1 && minima == nullptr)
    run(std::integral_constant<int, 1>{});
  else
    run(std::integral_constant<int, 2>{});
}

}  // namespace eli::cuda::detail
