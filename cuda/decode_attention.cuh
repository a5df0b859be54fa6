#pragma once
/// Fused decode attention (flash-decoding): grid (split, head, batch); each block scores one
/// split of one sequence's tokens straight from the stored codes, keeps the softmax partials
/// (max, sum, unnormalized output) in fp32, and a second kernel merges the splits.
///
/// Per 16-byte vector of a row, a thread needs one scale s and one bias m (groups are >= the
/// 16/32 elements a vector holds), so x = s * c + m folds into the dot product:
///   q.k = s * sum(q_i c_i) + m * sum(q_i),   acc_i += (p s) c_i  and  sum(p m) once per thread.
/// Group size and zero-point therefore stay runtime values at no cost in the inner loop.

#include <cmath>
#include <type_traits>

#include "common.cuh"
#include "decode_attention_h2.cuh"

#ifndef ELI_ATTN_INT4_DP4A
#define ELI_ATTN_INT4_DP4A 1  // timing knob: 0 sends INT4 K through the fp32 decode path
#endif
#ifndef ELI_ATTN_MMA_V_GROUPS
#define ELI_ATTN_MMA_V_GROUPS 1  // timing knob: 0 keeps grouped INT4 V on the half2 path
#endif
#ifndef ELI_ATTN_QBLOCKS
#define ELI_ATTN_QBLOCKS 8  // timing knob: resident blocks per SM asked for the quantized kernels
#endif
#ifndef ELI_ATTN_PROBE
#define ELI_ATTN_PROBE 0  // timing probes only: bit 1 skips the V loop, bit 2 the scores (3: both)
#endif

namespace eli::cuda::detail {

/// fp16 values of quantized V accumulate p*s*c in half2 within one unrolled iteration.
constexpr bool kHalf2Values = true;

/// Resident blocks per SM asked of the compiler (register budget 65536 / (128 n)). The quantized
/// kernels are bound by issue and latency, not bandwidth, so occupancy pays more than registers:
/// at the compiler's own choice (95 registers, 5 blocks) INT4 took 145 us at B=32, 8192, D=64 on
/// an H100, at 8 blocks (64 registers, ~170 bytes of spills) 127 us; 9 and 10 blocks spill more
/// and were slower. INT8 K at D=128 measured best at 6. 0 (fp kernels): the compiler's choice.
constexpr int attn_min_blocks(int d, Format fk, Format fv) {
  if (fk == Format::kFp && fv == Format::kFp) return 0;
  return (d == 64 || fk == Format::kInt4) ? ELI_ATTN_QBLOCKS : 6;
}

template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float* s_red) {
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  if (threadIdx.x % 32 == 0) s_red[threadIdx.x / 32] = v;
  __syncthreads();
  float r = s_red[0];
#pragma unroll
  for (int w = 1; w < kAttnThreads / 32; ++w) r = kMax ? fmaxf(r, s_red[w]) : r + s_red[w];
  __syncthreads();
  return r;
}

/// What one thread needs to read the (scale, bias) of its vector in a row of one operand.
template <Format F>
struct OperandReader {
  const uint8_t* data;
  const __half* scales;
  const __half* minima;
  float tensor_scale;  // > 0 when per-tensor
  int groups;          // scales per row
  int g;               // this thread's group
  CodeDecoder dec;

  __device__ OperandReader(const QuantView& v, int d, int first_elem) {
    data = static_cast<const uint8_t*>(v.data);
    scales = static_cast<const __half*>(v.scales);
    minima = static_cast<const __half*>(v.minima);
    tensor_scale = 0.f;
    groups = 1;
    g = 0;
    dec = CodeDecoder::make(F, v.minima != nullptr);
    if constexpr (F != Format::kFp) {
      if (v.tensor_scale > 0.f) {
        tensor_scale = v.tensor_scale;
        scales = nullptr;
        minima = nullptr;
      } else {
        groups = d / v.group;
        g = first_elem / v.group;
      }
    }
  }
  /// Row `row`'s (scale, bias) for this thread's group, for a loop specialized on how they are
  /// stored (kMode: 0 none / per tensor, 1 scales, 2 scales and minima; see dispatch()). The
  /// loads carry no branch, so the compiler issues them with the row's codes: behind a runtime
  /// test they went out only after the codes had arrived, a second memory latency per
  /// iteration. Rows are 32-bit (see s_row).
  template <int kMode>
  __device__ __forceinline__ void scale_of(uint32_t row, float& s, float& m) const {
    s = 1.f;
    m = 0.f;
    if constexpr (F != Format::kFp) {
      if constexpr (kMode == 0) {
        s = tensor_scale;
      } else {
        const size_t i = size_t(row) * groups + g;
        s = __half2float(scales[i]);
        if constexpr (kMode == 2) m = __half2float(minima[i]);
      }
    }
  }
  /// Calls fn(std::integral_constant<int, kMode>) for this operand's scale storage: a uniform
  /// branch once per block instead of one per row.
  template <typename Fn>
  __device__ __forceinline__ void dispatch(Fn&& fn) const {
    if constexpr (F == Format::kFp) {
      fn(std::integral_constant<int, 0>{});
    } else {
      if (scales == nullptr)
        fn(std::integral_constant<int, 0>{});
      else if (minima == nullptr)
        fn(std::integral_constant<int, 1>{});
      else
        fn(std::integral_constant<int, 2>{});
    }
  }
};

/// One thread's part of kAttnUnroll rows (slots i0 + u * kRows + r): its 16-byte vector and the
/// (scale, bias) of its group. Slots past the end hold the last row (s_row padding).
template <int kMode, int kRows, int kRowBytes, Format F>
__device__ __forceinline__ void load_rows(const OperandReader<F>& rd, const uint8_t* data,
                                          const uint32_t* s_row, int i0, int r,
                                          uint4 (&raw)[kAttnUnroll], float (&s)[kAttnUnroll],
                                          float (&m)[kAttnUnroll]) {
#pragma unroll
  for (int u = 0; u < kAttnUnroll; ++u) {
    const uint32_t row = s_row[i0 + u * kRows + r];
    raw[u] = load_vec(data + size_t(row) * kRowBytes);
    rd.template scale_of<kMode>(row, s[u], m[u]);
  }
}

/// Adds the partial dots of a row's kTpr threads; the row's first thread adds the bias and
/// stores the logit of slot i (log2 domain) unless i is past the end.
template <int kTpr>
__device__ __forceinline__ void store_logit(const DecodeAttentionParams& p, int b, int start, int n,
                                            int i, int lane_in_row, float logit, float* s_logit) {
#pragma unroll
  for (int off = kTpr / 2; off >= 1; off /= 2) logit += __shfl_xor_sync(0xffffffffu, logit, off);
  if (lane_in_row == 0 && i < n) {
    if (p.bias != nullptr) logit = fmaf(p.bias[b * p.bias_stride + start + i], kLog2e, logit);
    s_logit[i] = logit;
  }
}

/// dp4a with signed bytes in `a` (s8) or unsigned (u8), unsigned bytes in `b`.
__device__ __forceinline__ int dp4a_su(uint32_t a, uint32_t b, int c) {
  int d;
  asm("dp4a.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
__device__ __forceinline__ uint32_t dp4a_uu(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("dp4a.u32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

/// INT4 K scores with integer dot products (IDP4A: four byte products summed per instruction).
/// Each thread owns one 16-byte vector (32 codes) of a row, as in the generic loop. Its q slice
/// (times sm_scale log2 e) becomes 24-bit fixed point, q_i ~ sq * Q_i with |Q_i| <= 2^23 - 1,
/// split into three byte planes Q = 65536 Q2 + 256 Q1 + Q0 (Q2 signed): the integer sums are
/// exact, so the only error is the rounding of q to 24 bits of its slice's max (the precision of
/// fp32). The stored nibbles u (0..15) are used as they are: `w & 0x0F0F0F0F` gives the even
/// elements as bytes, `w & 0xF0F0F0F0` the odd ones times 16, so one word costs two LOPs and six
/// IDP4A against 8 PRMT + 8 FADD + 8 FFMA + 3 masks on the fp32 path; the code offset (8 when
/// symmetric) comes off once per row as offset * sum(Q).
template <typename T, int kD>
__device__ __forceinline__ void scores_dp4a(const DecodeAttentionParams& p, const uint32_t* s_row,
                                            int b, int64_t bh, int start, int n, float qscale,
                                            float* s_logit) {
  constexpr int kTpr = kD / 32;  // threads per row
  constexpr int kRows = kAttnThreads / kTpr;
  constexpr int kRowBytes = kD / 2;
  const int tid = threadIdx.x, lk = tid % kTpr, rk = tid / kTpr;
  const OperandReader<Format::kInt4> rd(p.k, kD, lk * 32);
  const T* q = static_cast<const T*>(p.q) + bh * kD + lk * 32;
  float qf[32];
  float amax = 0.f, qsum = 0.f;
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    qf[i] = to_float(q[i]) * qscale;
    amax = fmaxf(amax, fabsf(qf[i]));
    qsum += qf[i];
  }
  constexpr float kQMax = 8388607.f;  // 2^23 - 1
  const float inv = amax > 0.f ? kQMax / amax : 0.f;
  const float sq = amax / kQMax;
  // planes[k][w][e]: byte plane k of the q elements under word w's even (e = 0) or odd nibbles.
  uint32_t planes[3][4][2];
  int qint_sum = 0;  // |sum| <= 32 (2^23 - 1) < 2^31
#pragma unroll
  for (int w = 0; w < 4; ++w) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      uint32_t b0 = 0, b1 = 0, b2 = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int v = max(-8388607, min(8388607, __float2int_rn(qf[8 * w + 2 * j + e] * inv)));
        qint_sum += v;
        b0 |= uint32_t(v & 0xFF) << (8 * j);
        b1 |= uint32_t((v >> 8) & 0xFF) << (8 * j);
        b2 |= uint32_t((v >> 16) & 0xFF) << (8 * j);
      }
      planes[0][w][e] = b0;
      planes[1][w][e] = b1;
      planes[2][w][e] = b2;
    }
  }
  const float offset =
      p.k.minima != nullptr ? 0.f : 8.f;  // stored nibble = code + 8 when symmetric
  const float qoff = -offset * float(qint_sum);

  const uint8_t* data = rd.data + lk * 16;
  rd.dispatch([&](auto mode) {
    for (int i0 = 0; i0 < n; i0 += kRows * kAttnUnroll) {
      uint4 raw[kAttnUnroll];
      float ks[kAttnUnroll], km[kAttnUnroll];
      load_rows<decltype(mode)::value, kRows, kRowBytes>(rd, data, s_row, i0, rk, raw, ks, km);
#pragma unroll
      for (int u = 0; u < kAttnUnroll; ++u) {
        const uint32_t words[4] = {raw[u].x, raw[u].y, raw[u].z, raw[u].w};
        uint32_t a0 = 0, a1 = 0, a0x16 = 0, a1x16 = 0;
        int a2 = 0, a2x16 = 0;
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          const uint32_t even = words[w] & 0x0F0F0F0Fu, odd16 = words[w] & 0xF0F0F0F0u;
          a0 = dp4a_uu(planes[0][w][0], even, a0);
          a1 = dp4a_uu(planes[1][w][0], even, a1);
          a2 = dp4a_su(planes[2][w][0], even, a2);
          a0x16 = dp4a_uu(planes[0][w][1], odd16, a0x16);
          a1x16 = dp4a_uu(planes[1][w][1], odd16, a1x16);
          a2x16 = dp4a_su(planes[2][w][1], odd16, a2x16);
        }
        // Bounds: a0 <= 16 * 255 * 15, a1x16 <= 16 * 255 * 240, so the low part < 2^25; the
        // x16 sums are exact multiples of 16.
        const uint32_t low = a0 + (a1 << 8) + ((a0x16 + (a1x16 << 8)) >> 4);
        const int high = a2 + (a2x16 >> 4);
        const float dot = fmaf(float(high), 65536.f, float(low)) + qoff;
        store_logit<kTpr>(p, b, start, n, i0 + u * kRows + rk, lk,
                          fmaf(ks[u] * sq, dot, km[u] * qsum), s_logit);
      }
    }
  });
}

/// kMmaV: the values go through values_mma (fp16 symmetric INT4 V: per tensor, per token-head or
/// grouped; chosen by the launcher); a separate instantiation, so the registers of the other
/// values paths do not weigh on it.
template <typename T, int kD, Format FK, Format FV, bool kMmaV>
__global__ void __launch_bounds__(kAttnThreads, attn_min_blocks(kD, FK, FV))
    decode_attention_kernel(DecodeAttentionParams p, int split_len, float* __restrict__ part_acc,
                            float* __restrict__ part_ml) {
  allow_next_kernel();
  wait_prior_kernels();
  constexpr int kEK = Storage<FK, T>::kElemsPerVec, kEV = Storage<FV, T>::kElemsPerVec;
  constexpr int kTprK = kD / kEK, kTprV = kD / kEV;  // threads per row
  constexpr int kRowsK = kAttnThreads / kTprK, kRowsV = kAttnThreads / kTprV;
  constexpr int kRowBytesK = Storage<FK, T>::row_bytes(kD);
  constexpr int kRowBytesV = Storage<FV, T>::row_bytes(kD);
  static_assert(kTprK <= 32 && kTprV <= 32, "a row must fit in one warp");

  __shared__ float s_logit[kMaxSplitLen];
  __shared__ float s_red[kAttnThreads / 32];
  __shared__ float s_acc[kAttnThreads / 32][kD];
  static_assert(!kMmaV || (std::is_same_v<T, __half> && FV == Format::kInt4), "values_mma");
  // values_mma: the weights p_t s_{t,j} of this split, one row of w_stride per scale group j
  // along D, in dynamic shared memory sized by the launcher (values_mma_smem_bytes), so per-token
  // scales take one row and not the four that groups of 32 need at D = 128.
  constexpr int kMaxGroups = kD / 32;
  extern __shared__ __align__(16) __half s_w[];
  const int w_stride = (split_len + kRowPad - 1) / kRowPad * kRowPad;

  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = int64_t(b) * p.H + h;
  const int64_t pidx = bh * gridDim.x + split;
  const int start = split * split_len;
  const int end = min(p.seq_lens[b], start + split_len);
  if (start >= end) {
    if (threadIdx.x == 0) {
      part_ml[2 * pidx] = -INFINITY;
      part_ml[2 * pidx + 1] = 0.f;
    }
    return;
  }
  const int tid = threadIdx.x;
  const int n = end - start;

  // Row of every slot of the split, computed once for K and V (they share the map): the loops
  // read one 32-bit index from shared memory instead of redoing the 64-bit row math (and, paged,
  // the table lookup) per token and lane. Padded with the last row up to a multiple of
  // kRowPad, the longest stride of any loop below, so loops run past the end without a clamp
  // (those slots' logits are not written and their weights are 0).
  __shared__ __align__(16) uint32_t s_row[kMaxSplitLen];
  const int npad = (n + kRowPad - 1) / kRowPad * kRowPad;
  constexpr int kSlotsPerThread = kMaxSplitLen / kAttnThreads;
  {
    const RowCursor rows(p.map, b, h);
    if (rows.table == nullptr) {
      for (int i = tid; i < npad; i += kAttnThreads)
        s_row[i] = uint32_t(rows.base + start + min(i, n - 1));
    } else {
      // Paged: unrolled, so the table loads are in flight together.
#pragma unroll
      for (int k = 0; k < kSlotsPerThread; ++k) {
        const int i = tid + k * kAttnThreads;
        if (i < npad) s_row[i] = uint32_t(rows.row(start + min(i, n - 1)));
      }
    }
  }
  __syncthreads();

  // ---- scores: logit_t (log2 domain) into shared memory
#if ELI_ATTN_PROBE & 2
  for (int i = tid; i < n; i += kAttnThreads) s_logit[i] = 0.f;
#else
  if constexpr (std::is_same_v<T, __half> && FK == Format::kInt8) {
    scores_mma<kD, FK>(p, s_row, b, bh, start, n, p.sm_scale * kLog2e, s_logit);
  } else if constexpr (FK == Format::kInt4 && ELI_ATTN_INT4_DP4A) {
    scores_dp4a<T, kD>(p, s_row, b, bh, start, n, p.sm_scale * kLog2e, s_logit);
  } else {
    const int lk = tid % kTprK, rk = tid / kTprK;
    const OperandReader<FK> rd(p.k, kD, lk * kEK);
    const uint8_t* data = rd.data + lk * 16;
    const T* q = static_cast<const T*>(p.q) + bh * kD + lk * kEK;
    const float qscale = p.sm_scale * kLog2e;
    float qf[kEK];
    float qsum = 0.f;
#pragma unroll
    for (int i = 0; i < kEK; ++i) {
      qf[i] = to_float(q[i]) * qscale;
      qsum += qf[i];
    }
    rd.dispatch([&](auto mode) {
      for (int i0 = 0; i0 < n; i0 += kRowsK * kAttnUnroll) {
        uint4 raw[kAttnUnroll];
        float ks[kAttnUnroll], km[kAttnUnroll];
        load_rows<decltype(mode)::value, kRowsK, kRowBytesK>(rd, data, s_row, i0, rk, raw, ks, km);
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
      }
    });
  }
#endif
  __syncthreads();

  // ---- softmax partials of this split; the padding slots get weight 0
  // values_mma weighs token t by p_t s_{t,j} for each scale group j: the V scales of the slots
  // are loaded here, all at once (one 2-, 4- or 8-byte load per slot), so their latency
  // overlaps the max reduction (a loop with one load per iteration paid it 8 times). The load
  // width is chosen once (uniform branch) and every slot loads without a condition (slots
  // past the padding read row s_row[npad - 1]), so no test stands between the loads.
  const int vgroups = kMmaV && p.v.tensor_scale <= 0.f ? kD / p.v.group : 1;
  constexpr int kScaleWords = kMmaV ? (kMaxGroups + 1) / 2 : 1;
  uint32_t vscale[kMmaV ? kSlotsPerThread : 1][kScaleWords];
  if constexpr (kMmaV) {
    const __half* scales = static_cast<const __half*>(p.v.scales);
    auto load_all = [&](auto groups) {
      constexpr int kG = decltype(groups)::value;
#pragma unroll
      for (int k = 0; k < kSlotsPerThread; ++k) {
        const __half* rs = scales + size_t(s_row[min(tid + k * kAttnThreads, npad - 1)]) * kG;
#pragma unroll
        for (int w = 0; w < kScaleWords; ++w) vscale[k][w] = 0u;
        if constexpr (kG == 1) {
          vscale[k][0] = __half_as_ushort(*rs);
        } else if constexpr (kG == 2) {
          vscale[k][0] = *reinterpret_cast<const uint32_t*>(rs);
        } else {
          const uint2 v2 = *reinterpret_cast<const uint2*>(rs);
          vscale[k][0] = v2.x;
          vscale[k][kScaleWords - 1] = v2.y;
        }
      }
    };
    if (p.v.tensor_scale > 0.f) {
#pragma unroll
      for (int k = 0; k < kSlotsPerThread; ++k)
#pragma unroll
        for (int w = 0; w < kScaleWords; ++w) vscale[k][w] = 0u;
    } else if (vgroups == 1) {
      load_all(std::integral_constant<int, 1>{});
    } else if (kMaxGroups == 2 || vgroups == 2) {
      load_all(std::integral_constant<int, 2>{});
    } else {
      load_all(std::integral_constant<int, kMaxGroups>{});
    }
  }
  float mx = -INFINITY;
  for (int i = tid; i < n; i += kAttnThreads) mx = fmaxf(mx, s_logit[i]);
  mx = block_reduce<true>(mx, s_red);
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < kSlotsPerThread; ++k) {
    const int i = tid + k * kAttnThreads;
    if (i < npad) {
      const float e = i < n ? exp2f(s_logit[i] - mx) : 0.f;
      s_logit[i] = e;
      sum += e;
      if constexpr (kMmaV) {
        if (p.v.tensor_scale > 0.f) {
          s_w[i] = __float2half_rn(e * p.v.tensor_scale);
        } else {
#pragma unroll
          for (int j = 0; j < kMaxGroups; ++j) {
            if (j < vgroups) {
              const uint32_t word = vscale[k][j / 2];
              const float sj = __half2float(__ushort_as_half(
                  static_cast<unsigned short>(j % 2 ? word >> 16 : word & 0xFFFFu)));
              s_w[j * w_stride + i] = __float2half_rn(e * sj);
            }
          }
        }
      }
    }
  }
  sum = block_reduce<false>(sum, s_red);  // its barrier also publishes s_logit and s_w

  // ---- values: acc = sum_t p_t v_t
  if constexpr (kMmaV) {
    if (!(ELI_ATTN_PROBE & 1))
      values_mma<kD>(p, s_row, n, vgroups, s_w, w_stride, s_acc[tid / 32]);
    else
      for (int d = tid; d < kAttnThreads / 32 * kD; d += kAttnThreads) (&s_acc[0][0])[d] = 0.f;
  } else {
    const int lv = tid % kTprV, rv = tid / kTprV;
    const OperandReader<FV> rd(p.v, kD, lv * kEV);
    const uint8_t* data = rd.data + lv * 16;
    constexpr bool kH2V = kHalf2Values && std::is_same_v<T, __half> && FV != Format::kFp;
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
    rd.dispatch([&](auto mode) {
      for (int i0 = 0; i0 < ((ELI_ATTN_PROBE & 1) ? 0 : n); i0 += kRowsV * kAttnUnroll) {
        uint4 raw[kAttnUnroll];
        float vs[kAttnUnroll], vm[kAttnUnroll], pw[kAttnUnroll];
        load_rows<decltype(mode)::value, kRowsV, kRowBytesV>(rd, data, s_row, i0, rv, raw, vs, vm);
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
  __syncthreads();
  for (int d = tid; d < kD; d += kAttnThreads) {
    float o = 0.f;
#pragma unroll
    for (int w = 0; w < kAttnThreads / 32; ++w) o += s_acc[w][d];
    part_acc[pidx * kD + d] = o;
  }
  if (tid == 0) {
    part_ml[2 * pidx] = mx;
    part_ml[2 * pidx + 1] = sum;
  }
}

/// One block of kD threads per (b, h): merges the splits' (max, sum, acc) and, when the params
/// carry one, the step's new token at full precision (k_new, v_new [B, H, D]) as one more key,
/// so a decode step needs no separate merge (the eager ATen merge was ~10 launches a layer);
/// with store_k / store_v it also appends that token to unquantized storage (thread d writes
/// element d), the append of an fp cache without launches of its own.
/// Splits without tokens (sum 0) are skipped exactly: the result does not depend on how many
/// empty splits the grid has, only on the split length.
template <typename T, int kD>
__global__ void decode_attention_reduce_kernel(DecodeAttentionParams p,
                                               const float* __restrict__ part_acc,
                                               const float* __restrict__ part_ml, int num_splits) {
  allow_next_kernel();
  wait_prior_kernels();
  const int64_t bh = blockIdx.x;
  const int d = threadIdx.x;
  auto load_new = [&](const void* src) {
    return p.new_f32 ? static_cast<const float*>(src)[bh * kD + d]
                     : to_float(static_cast<const T*>(src)[bh * kD + d]);
  };
  const float* ml = part_ml + 2 * bh * num_splits;
  const float* acc = part_acc + bh * num_splits * kD + d;
  // The loads of a loop over splits are independent: the threads share them (pass 1) or issue
  // kUnroll at once (pass 2), so the kernel waits for memory a few times, not once per split.
  __shared__ float s_max[kD / 32], s_w[kD], s_l[kD];
  float mx = -INFINITY;
  for (int s = d; s < num_splits; s += kD)
    if (ml[2 * s + 1] > 0.f) mx = fmaxf(mx, ml[2 * s]);
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  if (d % 32 == 0) s_max[d / 32] = mx;
  float s_new = -INFINITY, k_d = 0.f, v_d = 0.f;
  if (p.k_new != nullptr) {
    k_d = load_new(p.k_new);
    v_d = load_new(p.v_new);
    // q . k_new over the block: warp sums, then the kD / 32 warp sums in a fixed order.
    __shared__ float s_dot[kD / 32];
    float x = to_float(static_cast<const T*>(p.q)[bh * kD + d]) * k_d;
#pragma unroll
    for (int off = 16; off >= 1; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
    if (d % 32 == 0) s_dot[d / 32] = x;
    __syncthreads();
    float dot = 0.f;
#pragma unroll
    for (int w = 0; w < kD / 32; ++w) dot += s_dot[w];
    s_new = dot * p.sm_scale * kLog2e;
    if (p.store_k != nullptr) {
      const int b = int(bh / p.H), h = int(bh % p.H);
      const int64_t row = row_of(p.map, b, h, p.store_t0[b]);
      static_cast<T*>(p.store_k)[row * kD + d] = from_float<T>(k_d);
      static_cast<T*>(p.store_v)[row * kD + d] = from_float<T>(v_d);
    }
  }
  __syncthreads();
  mx = s_new;
#pragma unroll
  for (int w = 0; w < kD / 32; ++w) mx = fmaxf(mx, s_max[w]);
  // Pass 2, kD splits at a time: their weights exp2(m_s - mx) (0 for empty splits) through
  // shared memory, then every thread sums its column in split order.
  float l = 0.f, o = 0.f;
  for (int s0 = 0; s0 < num_splits; s0 += kD) {
    const int s = s0 + d, n = min(kD, num_splits - s0);
    const float ls = s < num_splits ? ml[2 * s + 1] : 0.f;
    s_l[d] = ls;
    s_w[d] = ls > 0.f ? exp2f(ml[2 * s] - mx) : 0.f;
    __syncthreads();
    constexpr int kUnroll = 8;
    for (int j0 = 0; j0 < n; j0 += kUnroll) {
      float a[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) a[u] = j0 + u < n ? acc[int64_t(s0 + j0 + u) * kD] : 0.f;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int j = j0 + u;
        if (j < n && s_l[j] > 0.f) {
          l = fmaf(s_l[j], s_w[j], l);
          o = fmaf(s_w[j], a[u], o);
        }
      }
    }
    __syncthreads();
  }
  if (p.k_new != nullptr) {
    const float w = exp2f(s_new - mx);
    l += w;
    o = fmaf(w, v_d, o);
  }
  static_cast<T*>(p.out)[bh * kD + d] = from_float<T>(l > 0.f ? o / l : 0.f);
  if (p.lse != nullptr && d == 0) p.lse[bh] = l > 0.f ? (mx + log2f(l)) / kLog2e : -INFINITY;
}

/// Grid shape chosen by the launcher (see decode_attention.cu).
struct SplitPlan {
  int split_len;
  int num_splits;
};

template <typename T, Format FV>
constexpr bool values_mma_ok() {
  return std::is_same_v<T, __half> && FV == Format::kInt4;
}
/// Whether the values go through values_mma: fp16 INT4 V, symmetric (per tensor, per token-
/// head or per group of 32 / 64; one weight row per group). It won wherever it applies once
/// the slot rows came from shared memory (H100, B=32, 8192: INT4 K + INT4 V per token-head at
/// D=64 135 us on the half2 path vs 109 us; before that change the half2 path had been the
/// faster one there). Grouped scales are read as one 4- or 8-byte word per row, so they must be
/// aligned to it (always, for the tensors the ops allocate).
template <typename T, int kD, Format FK, Format FV>
bool use_values_mma(const QuantView& v) {
  if constexpr (!values_mma_ok<T, FV>()) {
    return false;
  } else {
    if (v.minima != nullptr) return false;
    if (v.tensor_scale > 0.f) return true;
    const int groups = kD / v.group;
    if (groups > 1 && !ELI_ATTN_MMA_V_GROUPS) return false;
    return reinterpret_cast<uintptr_t>(v.scales) % (2 * groups) == 0;
  }
}

/// Dynamic shared memory of a values_mma kernel: one fp16 weight row per scale group.
inline size_t values_mma_smem_bytes(const QuantView& v, int d, int split_len) {
  const int groups = v.tensor_scale > 0.f ? 1 : d / v.group;
  const int stride = (split_len + kRowPad - 1) / kRowPad * kRowPad;
  return size_t(groups) * stride * sizeof(__half);
}

/// Launches both kernels for one K format; instantiated once per format in
/// decode_attention_{fp,int8,int4}.cu so the 36 kernels compile in parallel.
template <Format FK>
cudaError_t launch_decode_attention_for(const DecodeAttentionParams& p, const SplitPlan& plan,
                                        float* part_acc, float* part_ml, cudaStream_t stream) {
  const dim3 grid(plan.num_splits, p.H, p.B);
  ELI_DISPATCH_DTYPE(
      p.dtype, T,
      ELI_DISPATCH_HEAD_DIM(
          p.D, kD, ELI_DISPATCH_FORMAT(p.v.format, kFV, {
            if (use_values_mma<T, kD, FK, kFV>(p.v))
              launch(decode_attention_kernel<T, kD, FK, kFV, values_mma_ok<T, kFV>()>, grid,
                     dim3(kAttnThreads), values_mma_smem_bytes(p.v, kD, plan.split_len), stream, p,
                     plan.split_len, part_acc, part_ml);
            else
              launch(decode_attention_kernel<T, kD, FK, kFV, false>, grid, dim3(kAttnThreads), 0,
                     stream, p, plan.split_len, part_acc, part_ml);
            launch(decode_attention_reduce_kernel<T, kD>, dim3(p.B * p.H), dim3(kD), 0, stream, p,
                   static_cast<const float*>(part_acc), static_cast<const float*>(part_ml),
                   plan.num_splits);
          })));
  return cudaGetLastError();
}

}  // namespace eli::cuda::detail
