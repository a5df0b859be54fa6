#pragma once
/// Quantize / dequantize kernels (layout: include/eli/quant_layout.h).

#include <type_traits>

#include "common.cuh"

namespace eli::cuda::detail {

constexpr float kHalfMax = 65504.f;

template <Format F>
struct Levels;
template <>
struct Levels<Format::kInt8> {
  static constexpr int kSym = 127, kAsym = 255;
};
template <>
struct Levels<Format::kInt4> {
  static constexpr int kSym = 7, kAsym = 15;
};

/// Unquantized rows stored as they are: one 16-byte vector per thread, row (b, h, t) of x to
/// row (b, h, t0 + t) of dst through the map (the fp cache's append, graph-safe via t0_dev).
/// Two of the same kind in one launch (K and V of a step): blockIdx.y picks x / dst or x2 / dst2.
template <typename T, int kD>
__global__ void store_rows_kernel(const T* __restrict__ x1, const T* __restrict__ x2, int B, int H,
                                  int T_, int t0, const int32_t* __restrict__ t0_dev, RowMap map,
                                  T* __restrict__ dst1, T* __restrict__ dst2) {
  allow_next_kernel();
  wait_prior_kernels();
  const T* x = blockIdx.y == 0 ? x1 : x2;
  T* dst = blockIdx.y == 0 ? dst1 : dst2;
  constexpr int kVecs = kD * int(sizeof(T)) / 16;  // 16-byte vectors per row
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(B) * H * T_ * kVecs) return;
  const int64_t r = i / kVecs;
  const int j = int(i % kVecs);
  const int t = int(r % T_);
  const int64_t bh = r / T_;
  const int h = int(bh % H), b = int(bh / H);
  const int64_t drow = row_of(map, b, h, (t0_dev != nullptr ? t0_dev[b] : t0) + t);
  reinterpret_cast<uint4*>(dst + drow * kD)[j] = reinterpret_cast<const uint4*>(x + r * kD)[j];
}

/// Row x (kD values) quantized by one warp into row drow of dst: lane l owns elements
/// [l * D/32, (l + 1) * D/32). kGroup: 0 = per-tensor scale (read), D = one scale per row,
/// 32/64 = groups along D. Scales are rounded up to fp16 before the codes are computed and the
/// zero-point minimum down, so every value stays inside [m, m + levels * s] (see
/// include/eli/cache/quantize.h).
template <typename T, int kD, Format F, int kGroup, bool kZp>
__device__ __forceinline__ void quantize_row(const T* __restrict__ x, int64_t drow,
                                             const QuantTarget& dst) {
  static_assert(kD % 64 == 0, "lanes own an even number of elements");
  static_assert(!(kZp && kGroup == 0), "per-tensor quantization is symmetric");
  constexpr int kE = kD / 32;
  const int lane = threadIdx.x % 32;
  float v[kE];
#pragma unroll
  for (int i = 0; i < kE; ++i) v[i] = to_float(x[lane * kE + i]);

  float s, m = 0.f;
  if constexpr (kGroup == 0) {
    s = dst.tensor_scale;
  } else {
    constexpr int kLanes = kGroup / kE;  // lanes sharing one scale
    float hi = kZp ? v[0] : fabsf(v[0]), lo = v[0];
#pragma unroll
    for (int i = 1; i < kE; ++i) {
      hi = fmaxf(hi, kZp ? v[i] : fabsf(v[i]));
      lo = fminf(lo, v[i]);
    }
#pragma unroll
    for (int off = kLanes / 2; off >= 1; off /= 2) {
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, off));
      if constexpr (kZp) lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    }
    const int64_t sidx = drow * (kD / kGroup) + lane / kLanes;
    __half mh = __float2half_rn(0.f);
    if constexpr (kZp) {
      mh = __float2half_rd(fminf(fmaxf(lo, -kHalfMax), kHalfMax));
      m = __half2float(mh);
      s = (hi - m) / float(Levels<F>::kAsym);
    } else {
      s = hi / float(Levels<F>::kSym);
    }
    const __half sh = __float2half_ru(fminf(fmaxf(s, dst.eps), kHalfMax));
    s = __half2float(sh);
    if (lane % kLanes == 0) {
      static_cast<__half*>(dst.scales)[sidx] = sh;
      if constexpr (kZp) static_cast<__half*>(dst.minima)[sidx] = mh;
    }
  }

  int q[kE];
#pragma unroll
  for (int i = 0; i < kE; ++i) {
    if constexpr (kZp) {
      q[i] = int(fminf(fmaxf(rintf((v[i] - m) / s), 0.f), float(Levels<F>::kAsym)));
    } else {
      constexpr float L = float(Levels<F>::kSym);
      q[i] = int(fminf(fmaxf(rintf(v[i] / s), -L), L));
    }
  }
  uint8_t* codes = static_cast<uint8_t*>(dst.data);
  if constexpr (F == Format::kInt8) {
#pragma unroll
    for (int i = 0; i < kE; ++i) codes[drow * kD + lane * kE + i] = uint8_t(q[i] & 0xFF);
  } else {
    const int off = kZp ? 0 : 8;
#pragma unroll
    for (int i = 0; i < kE; i += 2) {
      codes[drow * (kD / 2) + (lane * kE + i) / 2] =
          uint8_t(((q[i] + off) & 0xF) | (((q[i + 1] + off) & 0xF) << 4));
    }
  }
}

/// The kind of a quantize target as quantize_row's template arguments take it (launch_quantize2
/// and the decode attention's append pick it alike): per tensor, one scale per row (group D) or
/// groups of 32 / 64, each symmetric or with a zero point. False for a kind no kernel has.
inline bool quantize_kind_ok(const QuantTarget& t, int head_dim) {
  if (t.format != Format::kInt8 && t.format != Format::kInt4) return false;
  if (t.tensor_scale > 0.f) return t.minima == nullptr;
  return t.group == head_dim || t.group == 32 || t.group == 64;
}

/// quantize_row for a target whose kind is read at run time (a kind quantize_kind_ok takes): the
/// same instantiations launch_quantize2 dispatches to, so the same bits.
template <typename T, int kD>
__device__ void quantize_row_any(const T* __restrict__ x, int64_t drow, const QuantTarget& dst) {
  auto by_group = [&](auto fc) {
    constexpr Format kF = decltype(fc)::value;
    const bool zp = dst.minima != nullptr;
    if (dst.tensor_scale > 0.f) return quantize_row<T, kD, kF, 0, false>(x, drow, dst);
    if (dst.group == kD)
      return zp ? quantize_row<T, kD, kF, kD, true>(x, drow, dst)
                : quantize_row<T, kD, kF, kD, false>(x, drow, dst);
    if (dst.group == 32)
      return zp ? quantize_row<T, kD, kF, 32, true>(x, drow, dst)
                : quantize_row<T, kD, kF, 32, false>(x, drow, dst);
    return zp ? quantize_row<T, kD, kF, 64, true>(x, drow, dst)
              : quantize_row<T, kD, kF, 64, false>(x, drow, dst);
  };
  if (dst.format == Format::kInt8)
    by_group(std::integral_constant<Format, Format::kInt8>{});
  else
    by_group(std::integral_constant<Format, Format::kInt4>{});
}

/// One warp per row (quantize_row). Two targets of the same kind in one launch (K and V of a
/// step): blockIdx.y picks x1 / dst1 or x2 / dst2.
template <typename T, int kD, Format F, int kGroup, bool kZp>
__global__ void quantize_kernel(const T* __restrict__ x1, const T* __restrict__ x2, int B, int H,
                                int T_, int t0, const int32_t* __restrict__ t0_dev, RowMap map,
                                QuantTarget dst1, QuantTarget dst2) {
  allow_next_kernel();
  wait_prior_kernels();
  const bool second = blockIdx.y != 0;
  const T* __restrict__ x = second ? x2 : x1;
  QuantTarget dst = dst1;  // field by field: selecting the struct put both on the stack
  if (second) {
    dst.data = dst2.data;
    dst.scales = dst2.scales;
    dst.minima = dst2.minima;
    dst.tensor_scale = dst2.tensor_scale;
    dst.eps = dst2.eps;
  }
  const int64_t rows = int64_t(B) * H * T_;
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;
  const int t = int(r % T_);
  const int64_t bh = r / T_;
  const int h = int(bh % H);
  const int b = int(bh / H);
  const int64_t drow = row_of(map, b, h, (t0_dev != nullptr ? t0_dev[b] : t0) + t);
  quantize_row<T, kD, F, kGroup, kZp>(x + r * kD, drow, dst);
}

constexpr int kDequantThreads = 256;
constexpr int kDequantUnroll = 8;

/// Loads the kBytes (2, 4 or 8) codes behind one 16-byte output vector.
template <int kBytes>
__device__ __forceinline__ void load_codes(const uint8_t* p, uint32_t (&w)[2]) {
  if constexpr (kBytes == 8) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w[0] = v.x;
    w[1] = v.y;
  } else if constexpr (kBytes == 4) {
    w[0] = __ldg(reinterpret_cast<const unsigned*>(p));
    w[1] = 0;
  } else {
    w[0] = __ldg(reinterpret_cast<const unsigned short*>(p));
    w[1] = 0;
  }
}

/// kN codes (INT8: bytes of w[0], w[1]; INT4: nibbles of w[0], low nibble first) as exact fp32
/// integers, the same PRMT + FADD as decode_vec.
template <Format F, int kN>
__device__ __forceinline__ void decode_words(const uint32_t (&w)[2], const CodeDecoder& dec,
                                             float (&out)[kN]) {
  if constexpr (F == Format::kInt8) {
    const uint32_t x[2] = {w[0] ^ dec.flip, w[1] ^ dec.flip};
#pragma unroll
    for (int i = 0; i < kN; ++i) out[i] = magic_byte(x[i / 4], 0x7440u | (i % 4)) - dec.sub;
  } else {
    const uint32_t lo = w[0] & kEvenNibbles, hi = (w[0] >> 4) & kEvenNibbles;
#pragma unroll
    for (int j = 0; j < kN / 2; ++j) {
      out[2 * j] = magic_byte(lo, 0x7440u | j) - dec.sub;
      out[2 * j + 1] = magic_byte(hi, 0x7440u | j) - dec.sub;
    }
  }
}

/// One thread per 16-byte *output* vector (8 fp16 or 4 fp32 values), so a warp's loads and
/// stores are both contiguous; kDequantUnroll vectors per thread, loads first, are in flight at
/// once. x' = code * s + m as two rounded fp32 ops (no FMA): bit-identical to the CPU reference.
template <typename T, int kD, Format F>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_kernel(QuantView src, RowMap map, int H, int T_, int t0, int64_t rows, bool direct,
                      int group_shift, T* __restrict__ out) {
  allow_next_kernel();
  wait_prior_kernels();
  constexpr int kOut = 16 / int(sizeof(T));
  constexpr int kInBytes = F == Format::kInt8 ? kOut : kOut / 2;
  constexpr int kUnitsPerRow = kD / kOut;
  constexpr int kRowBytes = Storage<F, T>::row_bytes(kD);
  const CodeDecoder dec = CodeDecoder::make(F, src.minima != nullptr);
  const int G = kD >> group_shift;
  const float ts = src.tensor_scale;
  const uint8_t* data = static_cast<const uint8_t*>(src.data);
  const __half* scales = static_cast<const __half*>(src.scales);
  const __half* minima = static_cast<const __half*>(src.minima);
  const int64_t total = rows * kUnitsPerRow;
  constexpr int64_t kTile = int64_t(kDequantThreads) * kDequantUnroll;
  for (int64_t base = int64_t(blockIdx.x) * kTile; base < total;
       base += int64_t(gridDim.x) * kTile) {
    uint32_t w[kDequantUnroll][2];
    float s[kDequantUnroll], m[kDequantUnroll];
#pragma unroll
    for (int u = 0; u < kDequantUnroll; ++u) {
      const int64_t i = base + u * kDequantThreads + threadIdx.x;
      w[u][0] = w[u][1] = 0;
      s[u] = ts;
      m[u] = 0.f;
      if (i < total) {
        const int64_t r = i / kUnitsPerRow;
        const int e0 = int(i % kUnitsPerRow) * kOut;
        int64_t srow = r;
        if (!direct) {
          const int t = int(r % T_);
          const int64_t bh = r / T_;
          srow = row_of(map, int(bh / H), int(bh % H), t0 + t);
        }
        load_codes<kInBytes>(data + srow * kRowBytes + e0 * kInBytes / kOut, w[u]);
        if (ts <= 0.f) {
          const int64_t sidx = srow * G + (e0 >> group_shift);
          s[u] = __half2float(scales[sidx]);
          if (minima != nullptr) m[u] = __half2float(minima[sidx]);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kDequantUnroll; ++u) {
      const int64_t i = base + u * kDequantThreads + threadIdx.x;
      if (i >= total) continue;
      float c[kOut];
      decode_words<F, kOut>(w[u], dec, c);
      T* o = out + i * kOut;  // row r, element e0 of a contiguous [rows, kD] output
      if constexpr (sizeof(T) == 2) {
        uint4 pack;
        uint32_t* pw = reinterpret_cast<uint32_t*>(&pack);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          __half2 h2 = __floats2half2_rn(__fadd_rn(__fmul_rn(c[2 * j], s[u]), m[u]),
                                         __fadd_rn(__fmul_rn(c[2 * j + 1], s[u]), m[u]));
          pw[j] = *reinterpret_cast<uint32_t*>(&h2);
        }
        *reinterpret_cast<uint4*>(o) = pack;
      } else {
        *reinterpret_cast<float4*>(o) = make_float4(
            __fadd_rn(__fmul_rn(c[0], s[u]), m[u]), __fadd_rn(__fmul_rn(c[1], s[u]), m[u]),
            __fadd_rn(__fmul_rn(c[2], s[u]), m[u]), __fadd_rn(__fmul_rn(c[3], s[u]), m[u]));
      }
    }
  }
}

}  // namespace eli::cuda::detail
