#pragma once
/// Quantize / dequantize kernels (layout: include/eli/quant_layout.h).

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

/// One warp per row of D values; lane l owns elements [l * D/32, (l + 1) * D/32).
/// kGroup: 0 = per-tensor scale (read), D = one scale per row, 32/64 = groups along D.
/// Scales are rounded up to fp16 before the codes are computed and the zero-point minimum down,
/// so every value stays inside [m, m + levels * s] (see include/eli/cache/quantize.h).
template <typename T, int kD, Format F, int kGroup, bool kZp>
__global__ void quantize_kernel(const T* __restrict__ x, int B, int H, int T_, int t0, RowMap map,
                                QuantTarget dst) {
  static_assert(kD % 64 == 0, "lanes own an even number of elements");
  static_assert(!(kZp && kGroup == 0), "per-tensor quantization is symmetric");
  constexpr int kE = kD / 32;
  const int64_t rows = int64_t(B) * H * T_;
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;
  const int lane = threadIdx.x % 32;
  const int t = int(r % T_);
  const int64_t bh = r / T_;
  const int h = int(bh % H);
  const int b = int(bh / H);
  const int64_t drow = row_of(map, b, h, t0 + t);

  float v[kE];
#pragma unroll
  for (int i = 0; i < kE; ++i) v[i] = to_float(x[r * kD + lane * kE + i]);

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

/// One thread per 16-byte code vector; x' = code * s + m computed as two rounded fp32 ops
/// (no FMA) so the result is bit-identical to the CPU reference.
template <typename T, int kD, Format F>
__global__ void dequantize_kernel(QuantView src, RowMap map, int H, int T_, int t0, int64_t rows,
                                  bool direct, T* __restrict__ out) {
  constexpr int kE = Storage<F, T>::kElemsPerVec;
  constexpr int kVecPerRow = kD / kE;
  constexpr int kRowBytes = Storage<F, T>::row_bytes(kD);
  const CodeDecoder dec = CodeDecoder::make(F, src.minima != nullptr);
  const int G = kD / src.group;
  const float ts = src.tensor_scale;
  const uint8_t* data = static_cast<const uint8_t*>(src.data);
  const __half* scales = static_cast<const __half*>(src.scales);
  const __half* minima = static_cast<const __half*>(src.minima);
  const int64_t total = rows * kVecPerRow;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / kVecPerRow;
    const int vi = int(i % kVecPerRow);
    int64_t srow = r;
    if (!direct) {
      const int t = int(r % T_);
      const int64_t bh = r / T_;
      srow = row_of(map, int(bh / H), int(bh % H), t0 + t);
    }
    const uint4 raw = load_vec(data + srow * kRowBytes + vi * 16);
    float s = ts, m = 0.f;
    if (ts <= 0.f) {
      const int64_t sidx = srow * G + (vi * kE) / src.group;
      s = __half2float(scales[sidx]);
      if (minima != nullptr) m = __half2float(minima[sidx]);
    }
    float c[kE];
    decode_vec<F, T>(raw, dec, c);
    T* o = out + r * kD + vi * kE;
    if constexpr (sizeof(T) == 2) {
#pragma unroll
      for (int k = 0; k < kE; k += 8) {
        uint4 pack;
        uint32_t* pw = reinterpret_cast<uint32_t*>(&pack);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          __half2 h2 = __floats2half2_rn(__fadd_rn(__fmul_rn(c[k + 2 * j], s), m),
                                         __fadd_rn(__fmul_rn(c[k + 2 * j + 1], s), m));
          pw[j] = *reinterpret_cast<uint32_t*>(&h2);
        }
        *reinterpret_cast<uint4*>(o + k) = pack;
      }
    } else {
#pragma unroll
      for (int k = 0; k < kE; k += 4) {
        float4 f4 =
            make_float4(__fadd_rn(__fmul_rn(c[k], s), m), __fadd_rn(__fmul_rn(c[k + 1], s), m),
                        __fadd_rn(__fmul_rn(c[k + 2], s), m), __fadd_rn(__fmul_rn(c[k + 3], s), m));
        *reinterpret_cast<float4*>(o + k) = f4;
      }
    }
  }
}

}  // namespace eli::cuda::detail
