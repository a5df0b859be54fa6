#pragma once
/// Decode attention, shared constants and the block-wide reduction. The kernel
/// (decode_attention.cuh) is composed of: the operands (operand.cuh: how a thread loads and
/// decodes a row of K or V with its scale), the score loops (scores.cuh), the value loops
/// (values.cuh) and the tensor-core / integer-dot helpers they use (mma.cuh).

#include "../common.cuh"
#include "split_plan.h"

namespace eli::cuda::detail {

constexpr int kAttnThreads = 128;
constexpr int kAttnUnroll = 4;
/// The slot rows of a split (s_row) are padded to a multiple of this: the longest stride of the
/// token loops (dp4a scores at D = 64: 64 rows x 4 unrolled; values_mma: 4 warps x 64).
constexpr int kRowPad = 256;
static_assert(kMaxSplitLen % kRowPad == 0, "a padded split fits s_row");
constexpr float kLog2e = 1.4426950408889634f;

/// Resident blocks per SM asked of the compiler (register budget 65536 / (128 n)). The quantized
/// kernels are bound by issue and latency, not bandwidth, so occupancy pays more than registers:
/// at the compiler's own choice (95 registers, 5 blocks) INT4 took 145 us at B=32, 8192, D=64 on
/// an H100, at 8 blocks (64 registers, ~170 bytes of spills) 127 us; 9 and 10 blocks spill more
/// and were slower. INT8 K at D=128 measured best at 6. 0 (fp kernels): the compiler's choice.
constexpr int kQuantBlocksPerSm = 8;
constexpr int attn_min_blocks(int d, Format fk, Format fv) {
  if (fk == Format::kFp && fv == Format::kFp) return 0;
  return (d == 64 || fk == Format::kInt4) ? kQuantBlocksPerSm : 6;
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

}  // namespace eli::cuda::detail
