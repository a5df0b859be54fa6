#pragma once
/// Register-level helpers of the decode attention: half2 <-> 32-bit words, the fp16 tensor-core
/// product (mma.m16n8k16, fp32 accumulators) and the integer dot products (dp4a).

#include <cuda_fp16.h>

#include <cstdint>

namespace eli::cuda::detail {

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

/// (a & kMask) | kOr in one LOP3: written as C++ the compiler emits an AND and an OR, since an
/// instruction takes one immediate (the INT4 decode spent half its LOP3s on the second one).
template <uint32_t kMask, uint32_t kOr>
__device__ __forceinline__ uint32_t and_or(uint32_t a) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(d) : "r"(a), "n"(kMask), "n"(kOr));
  return d;
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

}  // namespace eli::cuda::detail
