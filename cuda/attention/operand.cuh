#pragma once
/// The operands of the decode attention: how one thread reads its 16-byte vector of a K or V
/// row with the (scale, bias) of its group (OperandReader, load_rows), and how codes become
/// exact fp16 values two at a time for the half2 and tensor-core paths (HalfDecoder).
///
/// Per 16-byte vector of a row, a thread needs one scale s and one bias m (groups are >= the
/// 16/32 elements a vector holds), so x = s * c + m folds into the dot product:
///   q.k = s * sum(q_i c_i) + m * sum(q_i),   acc_i += (p s) c_i  and  sum(p m) once per thread.
/// Group size and zero-point therefore stay runtime values at no cost in the inner loop.

#include <type_traits>

#include "config.cuh"
#include "mma.cuh"

namespace eli::cuda::detail {

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

/// How the block's kAttnThreads threads read rows of kD elements stored as F: one 16-byte
/// vector (kElems elements) per thread, kTpr threads per row, kRows rows at a time.
template <typename T, int kD, Format F>
struct RowTiling {
  static constexpr int kElems = Storage<F, T>::kElemsPerVec;
  static constexpr int kTpr = kD / kElems;
  static constexpr int kRows = kAttnThreads / kTpr;
  static constexpr int kRowBytes = Storage<F, T>::row_bytes(kD);
  static_assert(kTpr <= 32, "a row must fit in one warp");
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

/// The loop of every per-row path: body(i0, raw, s, m) for the split's slots kRows *
/// kAttnUnroll at a time, this thread's vectors and (scale, bias) of rows i0 + u * kRows + r
/// loaded first (load_rows), with the operand's scale storage picked once per block (dispatch).
template <int kRows, int kRowBytes, Format F, typename Body>
__device__ __forceinline__ void for_each_rows(const OperandReader<F>& rd, const uint8_t* data,
                                              const uint32_t* s_row, int n, int r, Body&& body) {
  rd.dispatch([&](auto mode) {
    for (int i0 = 0; i0 < n; i0 += kRows * kAttnUnroll) {
      uint4 raw[kAttnUnroll];
      float s[kAttnUnroll], m[kAttnUnroll];
      load_rows<decltype(mode)::value, kRows, kRowBytes>(rd, data, s_row, i0, r, raw, s, m);
      body(i0, raw, s, m);
    }
  });
}

/// Exact fp16 codes from INT8/INT4 words (the fp16 form of CodeDecoder, common.cuh): a byte or
/// nibble v OR-ed into the mantissa of kHalf1024 reads as 1024 + v exactly; one HSUB2 removes
/// 1024 and the code offset `off` (kInt8SymOffset, quant::kInt4Offset, or 0 with a zero point).
struct HalfDecoder {
  uint32_t flip;
  __half2 sub;    // 1024 + off
  __half2 sub16;  // -(64 + off), for the x16 nibbles: (1024 + 16 n) / 16 - 64 - off
  static __device__ HalfDecoder make(Format f, bool zero_point) {
    const int off = zero_point ? 0 : (f == Format::kInt8 ? kInt8SymOffset : quant::kInt4Offset);
    HalfDecoder d;
    d.flip = (f == Format::kInt8 && !zero_point) ? kInt8SignFlip : 0u;
    d.sub = __float2half2_rn(1024.f + off);
    d.sub16 = __float2half2_rn(-(64.f + off));
    return d;
  }
  /// INT8 word -> (c0, c1), (c2, c3).
  __device__ __forceinline__ void int8(uint32_t w, uint32_t& c01, uint32_t& c23) const {
    const uint32_t x = w ^ flip;
    // Bytes 0, 1 (2, 3) of x under the 0x64 exponent bytes of kHalf1024 x 2.
    c01 = h22u(__hsub2(u2h2(__byte_perm(x, kHalf1024Bytes, 0x4140u)), sub));
    c23 = h22u(__hsub2(u2h2(__byte_perm(x, kHalf1024Bytes, 0x4342u)), sub));
  }
  /// INT4 word (element 2j in the low nibble of byte j) -> (c0, c4), (c1, c5), (c2, c6),
  /// (c3, c7).
  __device__ __forceinline__ void int4(uint32_t w, uint32_t (&c)[4]) const {
    const __half2 sixteenth = __float2half2_rn(0.0625f);
    const uint32_t w8 = w >> 8;
    // Low (high) nibbles of bytes 0 and 2 of w and of w >> 8, each in one fp16 half.
    constexpr uint32_t kLo = 0x000F000Fu, kHi = 0x00F000F0u;
    c[0] = h22u(__hsub2(u2h2(and_or<kLo, kHalf1024x2>(w)), sub));
    c[1] = h22u(__hfma2(u2h2(and_or<kHi, kHalf1024x2>(w)), sixteenth, sub16));
    c[2] = h22u(__hsub2(u2h2(and_or<kLo, kHalf1024x2>(w8)), sub));
    c[3] = h22u(__hfma2(u2h2(and_or<kHi, kHalf1024x2>(w8)), sixteenth, sub16));
  }
};

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
