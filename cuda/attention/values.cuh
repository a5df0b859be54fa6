#pragma once
/// The value loops of the decode attention: acc = sum_t p_t v_t over the slots of one split,
/// the weights p_t from the softmax pass in shared memory. values_rows reads any format through
/// fp32 / half2; values_mma runs symmetric INT4 V on the tensor cores (fp16).

#include "operand.cuh"

namespace eli::cuda::detail {

/// Values of any V format: acc = sum_t p_t v_t over the n slots of one split, with the weights
/// p_t in s_logit; each thread decodes its 16-byte vector of a row, kTpr threads per row. fp16
/// symmetric quantized V accumulates p*s*c in half2 within one unrolled iteration (<= 4
/// products, relative error ~2^-11), then adds into fp32 accumulators; zero-point V stays in
/// fp32 (s * c and the minimum cancel, fp16 products broke the fp16 output tolerance: |diff|
/// 7.6e-3 at 0.46). The rows of a warp are folded with shuffles, one row per warp goes to
/// s_acc[warp] (the caller adds the warps).
template <typename T, int kD, Format FV>
__device__ __forceinline__ void values_rows(const DecodeAttentionParams& p, const uint32_t* s_row,
                                            int n, const float* s_logit, float (*s_acc)[kD]) {
  using Tile = RowTiling<T, kD, FV>;
  constexpr int kEV = Tile::kElems, kTprV = Tile::kTpr, kRowsV = Tile::kRows;
  constexpr int kRowBytesV = Tile::kRowBytes;
  const int tid = threadIdx.x;
  const int lv = tid % kTprV, rv = tid / kTprV;
  const OperandReader<FV> rd(p.v, kD, lv * kEV);
  const uint8_t* data = rd.data + lv * 16;
  constexpr bool kH2V = std::is_same_v<T, __half> && FV != Format::kFp;
  HalfDecoder hdec{};
  // Zero-point values stay in fp32: s * c and the minimum cancel, fp16 products would not.
  bool use_h2 = false;
  if constexpr (kH2V) {
    hdec = HalfDecoder::make(FV, false);
    use_h2 = p.v.minima == nullptr;
  }
  float acc[kEV];
#pragma unroll
  for (int i = 0; i < kEV; ++i) acc[i] = 0.f;
  float macc = 0.f;
  for_each_rows<kRowsV, kRowBytesV>(
      rd, data, s_row, n, rv,
      [&](int i0, const uint4(&raw)[kAttnUnroll], const float(&vs)[kAttnUnroll],
          const float(&vm)[kAttnUnroll]) {
        float pw[kAttnUnroll];
#pragma unroll
        for (int u = 0; u < kAttnUnroll; ++u) pw[u] = s_logit[i0 + u * kRowsV + rv];
        bool done = false;
        if constexpr (kH2V) {
          if (use_h2) {
            __half2 hacc[kEV / 2];
#pragma unroll
            for (int k = 0; k < kEV / 2; ++k) hacc[k] = __float2half2_rn(0.f);
#pragma unroll
            for (int u = 0; u < kAttnUnroll; ++u) {
              uint32_t c[kEV / 2];
              decode_vec_h2<FV>(raw[u], hdec, c);
              const __half2 ps = __float2half2_rn(pw[u] * vs[u]);
#pragma unroll
              for (int k = 0; k < kEV / 2; ++k) hacc[k] = __hfma2(ps, u2h2(c[k]), hacc[k]);
              macc = fmaf(pw[u], vm[u], macc);
            }
#pragma unroll
            for (int k = 0; k < kEV / 2; ++k) {
              const float2 f = __half22float2(hacc[k]);
              acc[pair_lo<FV>(k)] += f.x;
              acc[pair_hi<FV>(k)] += f.y;
            }
            done = true;
          }
        }
        if (!done) {
#pragma unroll
          for (int u = 0; u < kAttnUnroll; ++u) {
            float c[kEV];
            decode_vec<FV, T>(raw[u], rd.dec, c);
            const float ps = pw[u] * vs[u];
#pragma unroll
            for (int i = 0; i < kEV; ++i) acc[i] = fmaf(ps, c[i], acc[i]);
            macc = fmaf(pw[u], vm[u], macc);
          }
        }
      });
  // The rows of one warp share lv = lane % kTprV: fold them with shuffles, so shared memory
  // sees one row per warp (a [rows][D] array written with stride kEV has 32-way conflicts).
#pragma unroll
  for (int i = 0; i < kEV; ++i) {
    float a = acc[i] + macc;
#pragma unroll
    for (int off = kTprV; off < 32; off *= 2) a += __shfl_xor_sync(0xffffffffu, a, off);
    acc[i] = a;
  }
  const int lane = tid % 32;
  if (lane < kTprV) {
#pragma unroll
    for (int i = 0; i < kEV; ++i) s_acc[tid / 32][lane * kEV + i] = acc[i];
  }
}

/// Byte offset of byte `byte` of token tt's row in a warp's V stage of values_mma (rows of kD / 2
/// bytes): a swizzle that makes the fragment reads conflict-free. A warp's 4-byte (D = 64) or
/// 8-byte (D = 128) read of one fragment touches tokens tt0 + 2i (i = 0..3) at byte 4 g or 8 g;
/// unswizzled, D = 64 rows 0 and 4 share banks (2-way), D = 128 rows 0, 2, 4, 6 do. D = 64
/// swaps row pairs by bit 2 of tt; D = 128 by bit 1, and its 32-byte halves by bit 2. The
/// offset depends on tt mod 8 only, so token tt + 8 j is 8 j rows further.
template <int kD>
__device__ __forceinline__ uint32_t v_stage_offset(int tt, int byte) {
  if constexpr (kD == 64) {
    const int row = tt ^ ((tt >> 2) & 1);
    return uint32_t(row * 32 + byte);
  } else {
    const int row = tt ^ ((tt >> 1) & 1);
    const int chunk = (byte / 16) ^ (2 * ((tt >> 2) & 1));
    return uint32_t(row * 64 + chunk * 16 + byte % 16);
  }
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
/// Warp w takes the 16 kTiles tokens of an iteration. Lane (g, i) needs tokens 2i, 2i + 1,
/// 2i + 8, 2i + 9 of each tile and its own D / 8 dimensions (4 or 8 bytes a token, all in one
/// group). kStage: the iteration's rows are first copied to the warp's stage in shared memory,
/// 16 bytes a lane and copy (cp.async, 4 a lane), and each fragment is one shared load with a
/// constant offset; else each is a global load with a 64-bit address of its own (~4
/// instructions). Staging measured 3% faster at D = 64 (INT4, INT4 g32, mixed) and for mixed at
/// D = 128, 2-4% slower for INT4 K at D = 128 (24 bytes of spills at 8 blocks per SM): the
/// kernel picks it per instantiation (decode_attention.cuh). PRMT interleaves two tokens' bytes
/// so that one word decodes into half2 (token a, token b) pairs, the A layout. The lane holding
/// column j(d) of rows g and g + 8 writes dimensions g D / 8 + 8 (m / 4) + 2 (m % 4) (+1) of
/// m-tile m to `out` ([kD], this warp's row; the caller adds the warps).
template <int kD, bool kStage>
__device__ __forceinline__ void values_mma(const DecodeAttentionParams& p, const uint32_t* s_row,
                                           int n, int groups, const __half* s_w, int w_stride,
                                           float* out) {
  constexpr int kRowBytes = kD / 2;
  constexpr int kLaneWords = kD / 64;       // 32-bit words of one token per lane (8 dims each)
  constexpr int kMt = kD / 16;              // m-tiles: 4 per word
  constexpr int kTiles = kD == 64 ? 4 : 2;  // 16-token tiles per warp and iteration (<= 4: s_w)
  constexpr int kWarps = kAttnThreads / 32;
  constexpr int kIterTokens = 16 * kTiles;
  constexpr int kStageBytes = kIterTokens * kRowBytes;  // 2 KiB
  constexpr int kChunksPerRow = kRowBytes / 16;
  constexpr int kTokensPerCopy = 32 / kChunksPerRow;  // tokens one copy of the warp covers
  constexpr int kCopies = kStageBytes / (32 * 16);    // copies per lane and iteration
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, li = lane % 4;
  const uint8_t* vdata = static_cast<const uint8_t*>(p.v.data);
  const uint8_t* data = vdata + g * (4 * kLaneWords);  // unstaged: this lane's bytes of a row
  const HalfDecoder dec = HalfDecoder::make(Format::kInt4, false);
  uint8_t* stage = nullptr;
  if constexpr (kStage) {
    __shared__ __align__(16) uint8_t s_v[kWarps][kStageBytes];
    stage = s_v[warp];
  }
  // Staged: this lane's copies are token lane / kChunksPerRow (+ kTokensPerCopy per copy),
  // 16-byte piece lane % kChunksPerRow; its reads tokens 2i and 2i + 1 of tile 0 (2i + 8 and
  // 2i + 9 are 8 rows further, tile u 16 u rows).
  const int copy_tt = lane / kChunksPerRow, copy_byte = (lane % kChunksPerRow) * 16;
  const uint32_t copy_off = v_stage_offset<kD>(copy_tt, copy_byte);
  const uint32_t read_off[2] = {v_stage_offset<kD>(2 * li, g * 4 * kLaneWords),
                                v_stage_offset<kD>(2 * li + 1, g * 4 * kLaneWords)};
  // B column n = g carries the weights of scale group g % groups; C row r (dimensions of lane
  // group r) belongs to group r * groups / 8, so its column is that group.
  const __half* w_col = s_w + (g % groups) * w_stride;
  float c[kMt][4];
#pragma unroll
  for (int m = 0; m < kMt; ++m) c[m][0] = c[m][1] = c[m][2] = c[m][3] = 0.f;
  for (int base = warp * kIterTokens; base < n; base += kWarps * kIterTokens) {
    // Slots past the end hold the last row (s_row padding) and weight 0 (codes are finite).
    uint32_t raw[kTiles][4][kLaneWords];  // tokens 2i, 2i + 1, 2i + 8, 2i + 9 of each tile
    uint32_t wb[kTiles][2];
    if constexpr (kStage) {
#pragma unroll
      for (int k = 0; k < kCopies; ++k) {
        const uint32_t row = s_row[base + copy_tt + k * kTokensPerCopy];
        copy16_async(stage + copy_off + k * kTokensPerCopy * kRowBytes,
                     vdata + size_t(row) * kRowBytes + copy_byte);
      }
#pragma unroll
      for (int u = 0; u < kTiles; ++u) {
        const int i0 = base + 16 * u + 2 * li;
        wb[u][0] = *reinterpret_cast<const uint32_t*>(w_col + i0);
        wb[u][1] = *reinterpret_cast<const uint32_t*>(w_col + i0 + 8);
      }
      copy16_async_wait();
      __syncwarp();  // every lane's copies are visible to the warp
#pragma unroll
      for (int u = 0; u < kTiles; ++u) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const uint8_t* src = stage + read_off[r % 2] + (16 * u + 8 * (r / 2)) * kRowBytes;
          if constexpr (kLaneWords == 1) {
            raw[u][r][0] = *reinterpret_cast<const uint32_t*>(src);
          } else {
            const uint2 v = *reinterpret_cast<const uint2*>(src);
            raw[u][r][0] = v.x;
            raw[u][r][1] = v.y;
          }
        }
      }
      __syncwarp();  // the stage is read before the next iteration's copies overwrite it
    } else {
#pragma unroll
      for (int u = 0; u < kTiles; ++u) {
        const int i0 = base + 16 * u + 2 * li;
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

}  // namespace eli::cuda::detail
