#pragma once
/// A LayerNorm row held in registers by one block of kLnThreads threads: the stage the fused
/// row kernels (layer_fused.cu) and the projection kernel's LayerNorm prologue (gemv.cu) share,
/// so both give the same bits.

#include "common.cuh"

// Elements per thread of a LayerNorm row (kLnThreads threads): the smallest of 4, 8, 16, 48
// that covers n (n <= 12288).
#define ELI_DISPATCH_LN_WIDTH(n, kPer, ...)                 \
  if ((n) <= 4 * ::eli::cuda::detail::kLnThreads) {         \
    constexpr int kPer = 4;                                 \
    __VA_ARGS__;                                            \
  } else if ((n) <= 8 * ::eli::cuda::detail::kLnThreads) {  \
    constexpr int kPer = 8;                                 \
    __VA_ARGS__;                                            \
  } else if ((n) <= 16 * ::eli::cuda::detail::kLnThreads) { \
    constexpr int kPer = 16;                                \
    __VA_ARGS__;                                            \
  } else {                                                  \
    constexpr int kPer = 48;                                \
    __VA_ARGS__;                                            \
  }

namespace eli::cuda::detail {

constexpr int kLnThreads = 256;

/// Sum over the block (kLnThreads threads); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* s_red) {
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  __syncthreads();  // s_red may still be read by the previous call
  if (threadIdx.x % 32 == 0) s_red[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kLnThreads / 32; ++w) total += s_red[w];
  return total;
}

/// Element j of this thread's share of a row: index threadIdx.x + j * kLnThreads.
__device__ __forceinline__ int ln_index(int j) { return int(threadIdx.x) + j * kLnThreads; }

/// LayerNorm of a row held in registers (v[j] = element ln_index(j), 0 past n; w, b likewise)
/// into out: every operand was loaded before the first reduction, so a row costs one memory
/// round trip instead of three.
template <typename T, int kPer>
__device__ __forceinline__ void layernorm_regs(const float (&v)[kPer], const float (&w)[kPer],
                                               const float (&b)[kPer], int n, float eps,
                                               T* __restrict__ out, float* s_red) {
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) sum += v[j];
  const float mean = block_sum(sum, s_red) / float(n);
  float sq = 0.f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const float d = ln_index(j) < n ? v[j] - mean : 0.f;
    sq = fmaf(d, d, sq);
  }
  const float rstd = rsqrtf(block_sum(sq, s_red) / float(n) + eps);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    if (ln_index(j) < n) out[ln_index(j)] = from_float<T>(fmaf((v[j] - mean) * rstd, w[j], b[j]));
  }
}

}  // namespace eli::cuda::detail
