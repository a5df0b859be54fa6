// Skinny matrix products of a decode step: y [M, N] = x [M, K] W^T (+ bias) (then GELU) for
// M <= 8 token rows, the weights W [N, K] read once at the memory's speed. cuBLAS runs these
// shapes as general GEMMs (some split over K with a second reduction launch) at ~5 us each,
// latency-bound; a warp per output column with 16-byte loads and the epilogue fused does the
// same work in one short launch, split over K across the warps of a block where N alone gives
// too few warps to keep the memory busy. fp16 products of 9 .. 32 rows (a decode step at batch
// 9 .. 32) run on the tensor cores instead (gemm_rows_mma_kernel), W still read once.
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "attention/mma.cuh"
#include "common.cuh"

namespace eli::cuda {

namespace detail {

constexpr int kGemvWarps = 8;   // warps per block
constexpr int kGemvUnroll = 4;  // 16-byte loads of W in flight per lane past the staged ones
// Most chunks per lane requested before waiting for the kernels before (8 x 32 lanes x 16 bytes
// = 2048 fp16 elements, all of K for every GPT-2 product once split), staged in shared memory.
constexpr int kGemvPrefetch = 8;

/// Resident blocks per SM asked of the compiler: 8 at one row (32 registers), fewer as the rows'
/// accumulators and x loads grow (the most that compile without spills).
constexpr int gemv_min_blocks(int m) { return m == 1 ? 8 : (m == 2 ? 6 : (m == 4 ? 5 : 4)); }

/// acc + the dot product of two 16-byte vectors of T, in fp32.
template <typename T>
__device__ __forceinline__ float dot16(const uint4& a, const uint4& b, float acc) {
  const uint32_t wa[4] = {a.x, a.y, a.z, a.w}, wb[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 2) {
      const float2 fa = __half22float2(*reinterpret_cast<const __half2*>(&wa[i]));
      const float2 fb = __half22float2(*reinterpret_cast<const __half2*>(&wb[i]));
      acc = fmaf(fa.x, fb.x, acc);
      acc = fmaf(fa.y, fb.y, acc);
    } else {
      acc = fmaf(__uint_as_float(wa[i]), __uint_as_float(wb[i]), acc);
    }
  }
  return acc;
}

/// GELU, tanh form (GPT-2's), in fp32: the epilogue of every product kernel here.
__device__ __forceinline__ float gelu_tanh(float v) {
  constexpr float kAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * v * (1.f + tanhf(kAlpha * fmaf(0.044715f * v, v * v, v)));
}

/// Where element (m, n) of the product goes: y is [n_cols / seg, m_rows, seg], the columns cut
/// into parts of seg (launch_gemv's `parts`; seg = n_cols: plain [m_rows, n_cols]). At one row
/// that is n.
__device__ __forceinline__ int64_t out_index(int m, int n, int m_rows, int seg) {
  const int part = n / seg;
  return (int64_t(part) * m_rows + m) * seg + (n - part * seg);
}

/// kSplit warps per output column n, each over a contiguous 1 / kSplit of K: lanes stride over
/// their part of W[n, :] in 16-byte chunks, the matching x chunks of every row m from L1 (or,
/// kStageX, from the block's copy of x in shared memory: gemv_stage_x_fits); fp32
/// sums, warp reduction, the kSplit partial sums added in a fixed order through shared memory,
/// then bias and GELU (tanh). The weights do not depend on earlier kernels: each lane requests
/// its first `stage` chunks (<= kGemvPrefetch; all of a GPT-2 row part) before
/// wait_prior_kernels(), so the weight stream of this product overlaps the kernels before it (see
/// common.cuh), and any rest kGemvUnroll chunks at a time. The requested chunks land in shared
/// memory (cp.async), not registers: at 32 registers a thread (one row) 8 blocks fit an SM and a
/// 1.5B-shaped product's grid is resident in one wave; held in registers (48-56 a thread) the
/// grids of three of the four products of a layer took two waves, and the second wave's loads
/// started only after the first finished (H200, ms per decode step: 1.5B 1 x 128 1.904 ->
/// 1.625, 124M 1 x 128 0.291 -> 0.261, 124M 8 x 128 0.701 -> 0.629). Shared memory: stage x
/// 4 KiB <= 32 KiB a block, plus x's rows with kStageX.
template <typename T, int kM, int kSplit, bool kStageX>
__global__ void __launch_bounds__(kGemvWarps * 32, gemv_min_blocks(kM))
    gemv_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                T* __restrict__ y, int m_rows, int n_cols, int k_dim, bool gelu, int stage,
                int seg) {
  constexpr int kE = 16 / int(sizeof(T));
  constexpr int kCols = kGemvWarps / kSplit;
  constexpr int kThreads = kGemvWarps * 32;
  extern __shared__ uint4 s_stage[];  // [stage][kThreads], then kStageX: x [m_rows][chunks]
  __shared__ float s_part[kGemvWarps][kM];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int n = blockIdx.x * kCols + warp / kSplit, part = warp % kSplit;
  const T* wr = w + int64_t(n < n_cols ? n : 0) * k_dim;
  const int chunks = k_dim / kE, per = (chunks + kSplit - 1) / kSplit;
  const int c_begin = part * per, c_end = n < n_cols ? min(chunks, c_begin + per) : c_begin;
  for (int u = 0; u < stage; ++u) {
    const int c = c_begin + lane + u * 32;
    if (c < c_end) copy16_async(&s_stage[u * kThreads + threadIdx.x], wr + int64_t(c) * kE);
  }
  allow_next_kernel();
  // The bias is a parameter too: loaded before the wait, not at the end of the dot product, and
  // after allow_next_kernel() (the store waits for the load; the next kernel's launch should
  // not). Kept in shared memory (lane 0 stores and reads back its own word): as a register it
  // spilled at 32.
  __shared__ float s_bias[kGemvWarps];
  if (lane == 0) s_bias[warp] = bias != nullptr && n < n_cols ? to_float(bias[n]) : 0.f;
  wait_prior_kernels();
  // kStageX: the block's x rows copied to shared memory by all its threads at once (one memory
  // round trip), instead of each lane loading the x chunks of every row through L1 in the loop
  // below (at 8 rows, 8 loads a chunk).
  uint4* s_x = s_stage + stage * kThreads;
  if constexpr (kStageX) {
    for (int i = threadIdx.x; i < m_rows * chunks; i += kThreads)
      copy16_async(&s_x[i], x + int64_t(i) * kE);
  }
  float acc[kM];
#pragma unroll
  for (int m = 0; m < kM; ++m) acc[m] = 0.f;
  // Converts pairs as it goes (not whole vectors to fp32 first): fewer live registers.
  auto accumulate = [&](const uint4& wraw, int c) {
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      if (m >= m_rows) break;
      const uint4 xraw =
          kStageX ? s_x[m * chunks + c]
                  : *reinterpret_cast<const uint4*>(x + int64_t(m) * k_dim + int64_t(c) * kE);
      acc[m] = dot16<T>(wraw, xraw, acc[m]);
    }
  };
  copy16_async_wait();                     // each lane reads back the W chunks it copied itself
  if constexpr (kStageX) __syncthreads();  // x: copied by the whole block
  for (int u = 0; u < stage; ++u) {
    const int c = c_begin + lane + u * 32;
    if (c >= c_end) break;
    accumulate(s_stage[u * kThreads + threadIdx.x], c);
  }
  // Chunks past the staged ones (a part longer than kGemvPrefetch x 32 chunks).
  for (int c0 = c_begin + lane + stage * 32; c0 < c_end; c0 += 32 * kGemvUnroll) {
    uint4 wv[kGemvUnroll];
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int c = c0 + u * 32;
      if (c < c_end) wv[u] = *reinterpret_cast<const uint4*>(wr + int64_t(c) * kE);
    }
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int c = c0 + u * 32;
      if (c >= c_end) break;
      accumulate(wv[u], c);
    }
  }
#pragma unroll
  for (int m = 0; m < kM; ++m) {
#pragma unroll
    for (int off = 16; off >= 1; off /= 2) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], off);
  }
  if constexpr (kSplit > 1) {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < kM; ++m) s_part[warp][m] = acc[m];
    }
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int m = 0; m < kM; ++m) {
      acc[m] = s_part[warp][m];
#pragma unroll
      for (int p = 1; p < kSplit; ++p) acc[m] += s_part[warp + p][m];
    }
  }
  if (lane != 0 || n >= n_cols) return;
#pragma unroll
  for (int m = 0; m < kM; ++m) {
    if (m >= m_rows) break;
    float v = acc[m] + s_bias[warp];
    if (gelu) v = gelu_tanh(v);
    y[kM == 1 ? int64_t(n) : out_index(m, n, m_rows, seg)] = from_float<T>(v);
  }
}

/// Whether gemv_kernel stages x in shared memory (kStageX, instantiated for 3 .. 8 rows): where
/// the extra bytes keep the grid in one wave of resident blocks or cost no residency at all (a
/// grid that needs a second wave issues the second wave's weight loads only after the first
/// finishes), at most 16 KiB of x and 48 KiB in all (the default dynamic shared memory limit).
/// H200, ms per decode step, same run: 124M 8 x 128 0.621 -> 0.575, 4 x 128 0.408 -> 0.403; at
/// one row it lost (124M 1 x 128 0.257 -> 0.323, 1.5B 1 x 128 1.645 -> 1.748), so one and two
/// rows keep the loads from L1.
inline bool gemv_stage_x_fits(size_t w_bytes, size_t x_bytes, int reg_blocks, unsigned blocks) {
  if (x_bytes > 16 * 1024 || w_bytes + x_bytes > 48 * 1024) return false;
  const int smem_per_sm = device_smem_per_sm();
  if (smem_per_sm <= 0) return false;
  constexpr size_t kReservedPerBlock = 1024;  // the driver's shared memory per block
  auto resident = [&](size_t bytes) {
    const int by_smem = int(size_t(smem_per_sm) / (bytes + kReservedPerBlock));
    return std::min(reg_blocks, by_smem);
  };
  const int with_x = resident(w_bytes + x_bytes), without = resident(w_bytes);
  return with_x >= without || int64_t(with_x) * device_sm_count() >= int64_t(blocks);
}

template <typename T, int kM>
cudaError_t run_gemv(const void* x, const void* w, const void* bias, void* y, int m, int n, int k,
                     bool gelu, int seg, cudaStream_t stream) {
  // Enough warps to keep the memory busy (~32 per SM): columns x parts >= 4096, each part at
  // least one 16-byte chunk per lane. H200, ms per decode step against one warp per column:
  // 124M batch 8 0.76 vs 0.91, 1.5B batch 1 2.26 vs 2.32, 124M batch 1 0.405 vs 0.396 (measured
  // before the weights were staged in shared memory).
  const int chunks = k / (16 / int(sizeof(T)));
  int split = 1;
  while (split < kGemvWarps && int64_t(n) * split < 4096 && chunks / (2 * split) >= 32) split *= 2;
  auto go = [&](auto split_c) {
    constexpr int kS = decltype(split_c)::value;
    constexpr int kCols = kGemvWarps / kS;
    const int per = (chunks + kS - 1) / kS;
    const int stage = std::min(kGemvPrefetch, (per + 31) / 32);
    const unsigned blocks = unsigned((n + kCols - 1) / kCols);
    const size_t w_bytes = size_t(stage) * kGemvWarps * 32 * sizeof(uint4);
    const size_t x_bytes = size_t(m) * size_t(k) * sizeof(T);
    auto run = [&](auto stage_x) {
      constexpr bool kX = decltype(stage_x)::value;
      return launch(gemv_kernel<T, kM, kS, kX>, dim3(blocks), dim3(kGemvWarps * 32),
                    w_bytes + (kX ? x_bytes : 0), stream, static_cast<const T*>(x),
                    static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(y), m, n,
                    k, gelu, stage, seg);
    };
    if constexpr (kM >= 4) {
      if (gemv_stage_x_fits(w_bytes, x_bytes, gemv_min_blocks(kM), blocks))
        return run(std::true_type{});
    }
    return run(std::false_type{});
  };
  switch (split) {
    case 1:
      return go(std::integral_constant<int, 1>{});
    case 2:
      return go(std::integral_constant<int, 2>{});
    case 4:
      return go(std::integral_constant<int, 4>{});
    default:
      return go(std::integral_constant<int, 8>{});
  }
}

/// Shared memory for the ring of W chunks of a tensor-core product block (gemm_rows_mma_kernel,
/// gemm_rows_mma_wide_kernel): 64 KiB, 8 chunks a warp at 8 warps.
constexpr size_t kMmaRingBytes = 64 * 1024;
/// Bytes of W a warp's lanes copy per 32-element chunk: 16 rows x 64 bytes.
constexpr size_t kMmaChunkBytes = 2 * 32 * sizeof(uint4);

/// fp16 products of 9 .. 32 rows on the tensor cores, W still read once: warp w of a block
/// takes the block's 16 output columns n0 .. n0 + 15 over its 1 / kWarps of K, in chunks of 32
/// elements; per chunk two mma.m16n8k16 per 8 rows of x, A = 16 rows of W, B = x^T. Within a
/// chunk, lane (g, i) = (lane / 4, lane % 4) loads 16 contiguous bytes, elements 8 i .. 8 i + 7,
/// of W rows n0 + g and n0 + g + 8 and of x rows 8 j + g: the first mma takes elements 8 i + 0..3
/// and the second 8 i + 4..7, a permutation of K that A and B share (so the sum is unchanged)
/// and that makes every load one 16-byte vector. W streams through a ring of kStages chunks a
/// warp in shared memory (cp.async, one commit group a chunk; each lane reads back only what it
/// copied, so no barrier), the first kStages - 1 requested before waiting on the kernels before
/// (7 at 8 warps: all of a warp's part of W for GPT-2 124M's QKV, attention-output and fc
/// products; 3 of the 6 at 16 warps for its MLP output product); x runs two chunks ahead in
/// registers.
/// The warps' fp32 partial tiles are added in warp order through shared memory, then the
/// epilogue of gemv_kernel (bias and GELU in fp32, one rounding).
template <int kWarps, int kMT>
__global__ void __launch_bounds__(kWarps * 32, 1)
    gemm_rows_mma_kernel(const __half* __restrict__ x, const __half* __restrict__ w,
                         const __half* __restrict__ bias, __half* __restrict__ y, int m_rows,
                         int n_cols, int k_dim, bool gelu, int seg) {
  constexpr int kRows = 8 * kMT;
  constexpr int kThreads = kWarps * 32;
  constexpr int kStages = int(kMmaRingBytes / (kWarps * kMmaChunkBytes));
  static_assert(kStages >= 2, "the ring needs two stages");
  __shared__ float s_c[kWarps][16][kRows];
  extern __shared__ uint4 s_ring[];  // [stage][row g, row g + 8][thread]
  const int t = threadIdx.x, lane = t % 32, warp = t / 32, g = lane / 4, i = lane % 4;
  const int n0 = blockIdx.x * 16;
  const int chunks = k_dim / 32, per = (chunks + kWarps - 1) / kWarps;
  const int c_begin = min(chunks, warp * per), c_end = min(chunks, c_begin + per);
  const __half* wg = w + int64_t(min(n0 + g, n_cols - 1)) * k_dim + 8 * i;
  const __half* wg8 = w + int64_t(min(n0 + g + 8, n_cols - 1)) * k_dim + 8 * i;
  auto at = [&](int stage, int row8) { return &s_ring[(stage * 2 + row8) * kThreads + t]; };
  auto issue = [&](int c) {  // one commit group per chunk, empty past the end (for the count)
    if (c < c_end) {
      const int stage = (c - c_begin) % kStages;
      copy16_async(at(stage, 0), wg + int64_t(c) * 32);
      copy16_async(at(stage, 1), wg8 + int64_t(c) * 32);
    }
    copy16_async_commit();
  };
  uint4 xs[2][kMT];
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  auto load_x = [&](int slot, int c) {
#pragma unroll
    for (int j = 0; j < kMT; ++j) {
      const int row = 8 * j + g;
      xs[slot][j] =
          row < m_rows
              ? *reinterpret_cast<const uint4*>(x + int64_t(row) * k_dim + int64_t(c) * 32 + 8 * i)
              : zero;
    }
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(c_begin + s);
  allow_next_kernel();
  wait_prior_kernels();
#pragma unroll
  for (int s = 0; s < 2; ++s)
    if (c_begin + s < c_end) load_x(s, c_begin + s);
  float acc[kMT][4];
#pragma unroll
  for (int j = 0; j < kMT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  for (int c = c_begin; c < c_end; c += 2) {
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      if (c + s < c_end) {
        copy16_async_wait_pending<kStages - 2>();  // chunk c + s's group has landed
        const int stage = (c + s - c_begin) % kStages;
        const uint4 a = *at(stage, 0), b = *at(stage, 1);
        issue(c + s + kStages - 1);  // into the stage read and used the step before
#pragma unroll
        for (int j = 0; j < kMT; ++j) {
          const uint4 xv = xs[s][j];
          mma_16816(acc[j], a.x, b.x, a.y, b.y, xv.x, xv.y);
          mma_16816(acc[j], a.z, b.z, a.w, b.w, xv.z, xv.w);
        }
        if (c + s + 2 < c_end) load_x(s, c + s + 2);
      }
    }
  }
  // acc[j]: (column g, row 8 j + 2 i), (g, 8 j + 2 i + 1), (g + 8, 8 j + 2 i), (g + 8, ... + 1).
#pragma unroll
  for (int j = 0; j < kMT; ++j) {
    s_c[warp][g][8 * j + 2 * i] = acc[j][0];
    s_c[warp][g][8 * j + 2 * i + 1] = acc[j][1];
    s_c[warp][g + 8][8 * j + 2 * i] = acc[j][2];
    s_c[warp][g + 8][8 * j + 2 * i + 1] = acc[j][3];
  }
  __syncthreads();
  for (int t = threadIdx.x; t < 16 * kRows; t += kWarps * 32) {
    const int col = t % 16, m = t / 16, n = n0 + col;
    if (m >= m_rows || n >= n_cols) continue;
    float v = 0.f;
#pragma unroll
    for (int q = 0; q < kWarps; ++q) v += s_c[q][col][m];
    v += bias != nullptr ? __half2float(bias[n]) : 0.f;
    if (gelu) v = gelu_tanh(v);
    y[out_index(m, n, m_rows, seg)] = __float2half_rn(v);
  }
}

constexpr int kWideWarps = 8;
/// gemm_rows_mma_wide_kernel: chunks of W in a block's ring (64 KiB; 3 blocks of 8 warps an SM
/// in shared memory and registers, so the logits product's 393 blocks are one wave).
constexpr int kWideStages = int(kMmaRingBytes / (kWideWarps * kMmaChunkBytes));
constexpr int kWideBlocksPerSm = 3;
/// Column tiles from which the 9 .. 32-row products use gemm_rows_mma_wide_kernel, per SM: the
/// logits product (N = 50257: 3142 tiles), not the block's own (<= 3072 columns: 192 tiles).
constexpr int kWideTilesPerSm = 8;

/// gemm_rows_mma_kernel for products with many output columns (the logits product): each warp
/// owns one 16-column tile over all of K, so there is no partial tile to add through shared
/// memory and a block lives for all of K. W streams through a ring of kWideStages chunks in
/// shared memory (cp.async: the bytes in flight hold no registers, so 7 chunks a warp are in
/// flight where registers held 4), the first ones requested before waiting on the kernels
/// before; each lane reads back only the 16-byte vectors it copied itself, so there is no
/// barrier. x comes from L1. Same per-chunk mma layout and epilogue as gemm_rows_mma_kernel; the
/// sum over K runs in chunk order (other last bits than the split kernel's). H200, p50 ms per
/// decode step, same run, W in registers 4 chunks ahead -> this ring: 124M 32 x 896 full_cache
/// 0.749 -> 0.726, 32 x 3968 quant_int4 0.919 -> 0.897; the same ring with 32 contiguous bytes of
/// a row a lane per step (128-byte runs instead of 64) gained a third of that (0.740, 0.909).
template <int kMT>
__global__ void __launch_bounds__(kWideWarps * 32, kWideBlocksPerSm)
    gemm_rows_mma_wide_kernel(const __half* __restrict__ x, const __half* __restrict__ w,
                              const __half* __restrict__ bias, __half* __restrict__ y, int m_rows,
                              int n_cols, int k_dim, bool gelu, int seg) {
  constexpr int kThreads = kWideWarps * 32;
  extern __shared__ uint4 s_ring[];  // [stage][row g, row g + 8][thread]
  const int t = threadIdx.x, lane = t % 32, warp = t / 32, g = lane / 4, i = lane % 4;
  const int n0 = (blockIdx.x * kWideWarps + warp) * 16;
  const int chunks = k_dim / 32;
  const __half* wg = w + int64_t(min(n0 + g, n_cols - 1)) * k_dim + 8 * i;
  const __half* wg8 = w + int64_t(min(n0 + g + 8, n_cols - 1)) * k_dim + 8 * i;
  auto at = [&](int stage, int row8) { return &s_ring[(stage * 2 + row8) * kThreads + t]; };
  auto issue = [&](int c) {  // one commit group per chunk, empty past the end (for the count)
    if (c < chunks) {
      copy16_async(at(c % kWideStages, 0), wg + int64_t(c) * 32);
      copy16_async(at(c % kWideStages, 1), wg8 + int64_t(c) * 32);
    }
    copy16_async_commit();
  };
  const bool live = n0 < n_cols;
  if (live) {
#pragma unroll
    for (int c = 0; c < kWideStages - 1; ++c) issue(c);
  }
  allow_next_kernel();
  wait_prior_kernels();
  if (!live) return;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  float acc[kMT][4];
#pragma unroll
  for (int j = 0; j < kMT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  for (int c = 0; c < chunks; ++c) {
    copy16_async_wait_pending<kWideStages - 2>();  // chunk c's group has landed
    const uint4 a = *at(c % kWideStages, 0), b = *at(c % kWideStages, 1);
    issue(c + kWideStages - 1);  // into chunk c - 1's stage, read and used the step before
    uint4 xs[kMT];
#pragma unroll
    for (int j = 0; j < kMT; ++j) {
      const int row = 8 * j + g;
      xs[j] =
          row < m_rows
              ? *reinterpret_cast<const uint4*>(x + int64_t(row) * k_dim + int64_t(c) * 32 + 8 * i)
              : zero;
    }
#pragma unroll
    for (int j = 0; j < kMT; ++j) {
      mma_16816(acc[j], a.x, b.x, a.y, b.y, xs[j].x, xs[j].y);
      mma_16816(acc[j], a.z, b.z, a.w, b.w, xs[j].z, xs[j].w);
    }
  }
  // acc[j]: (column g, row 8 j + 2 i), (g, 8 j + 2 i + 1), (g + 8, 8 j + 2 i), (g + 8, ... + 1).
#pragma unroll
  for (int j = 0; j < kMT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int m = 8 * j + 2 * i + (e & 1), n = n0 + g + (e >= 2 ? 8 : 0);
      if (m >= m_rows || n >= n_cols) continue;
      float v = acc[j][e] + (bias != nullptr ? __half2float(bias[n]) : 0.f);
      if (gelu) v = gelu_tanh(v);
      y[out_index(m, n, m_rows, seg)] = __float2half_rn(v);
    }
  }
}

/// Lets a tensor-core product kernel take its ring (kMmaRingBytes, above the default 48 KiB of
/// dynamic shared memory). Called on every launch rather than once, so that it holds on
/// whichever device is current (a decode step is a graph replay: once per capture).
template <typename Kernel>
cudaError_t allow_ring(Kernel* kernel) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              int(kMmaRingBytes));
}

template <int kMT>
cudaError_t run_gemm_rows_mma_wide(const void* x, const void* w, const void* bias, void* y, int m,
                                   int n, int k, bool gelu, int seg, cudaStream_t stream) {
  if (const cudaError_t e = allow_ring(gemm_rows_mma_wide_kernel<kMT>); e != cudaSuccess) return e;
  const unsigned tiles = unsigned((n + 15) / 16);
  return launch(gemm_rows_mma_wide_kernel<kMT>, dim3((tiles + kWideWarps - 1) / kWideWarps),
                dim3(kWideWarps * 32), kMmaRingBytes, stream, static_cast<const __half*>(x),
                static_cast<const __half*>(w), static_cast<const __half*>(bias),
                static_cast<__half*>(y), m, n, k, gelu, seg);
}

template <int kMT>
cudaError_t run_gemm_rows_mma(const void* x, const void* w, const void* bias, void* y, int m, int n,
                              int k, bool gelu, int seg, cudaStream_t stream) {
  const unsigned blocks = unsigned((n + 15) / 16);
  if (int64_t(blocks) >= int64_t(kWideTilesPerSm) * device_sm_count())
    return run_gemm_rows_mma_wide<kMT>(x, w, bias, y, m, n, k, gelu, seg, stream);
  // Few column tiles (N = 768 of GPT-2's attention and MLP output products): twice the warps
  // per tile, so enough weight bytes are in flight.
  auto go = [&](auto warps_c) {
    constexpr int kW = decltype(warps_c)::value;
    if (const cudaError_t e = allow_ring(gemm_rows_mma_kernel<kW, kMT>); e != cudaSuccess) return e;
    return launch(gemm_rows_mma_kernel<kW, kMT>, dim3(blocks), dim3(kW * 32), kMmaRingBytes, stream,
                  static_cast<const __half*>(x), static_cast<const __half*>(w),
                  static_cast<const __half*>(bias), static_cast<__half*>(y), m, n, k, gelu, seg);
  };
  if (int64_t(blocks) < 2 * int64_t(device_sm_count()) && k / 32 >= 32)
    return go(std::integral_constant<int, 16>{});
  return go(std::integral_constant<int, 8>{});
}

}  // namespace detail

cudaError_t launch_gemv(DType dtype, const void* x, const void* w, const void* bias, void* y, int m,
                        int n, int k, bool gelu, int parts, cudaStream_t stream) {
  const bool mma = dtype == DType::kHalf && m > kGemvMaxRows;
  if (m < 1 || m > (dtype == DType::kHalf ? kGemvMaxRowsHalf : kGemvMaxRows))
    return invalid_argument("gemv rows (valid: 1 .. 8, fp16 1 .. 32)", m);
  if (n < 1) return invalid_argument("gemv output width", n);
  if (parts < 1 || n % parts != 0)
    return invalid_argument("gemv output parts (divide the width)", parts);
  const int seg = n / parts;
  const int elems = mma ? 32 : (dtype == DType::kHalf ? 8 : 4);
  if (k < 1 || k % elems != 0)
    return invalid_argument("gemv inner dim (16-byte multiple; 32 elements above 8 rows)", k);
  auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  if (!x || !w || !y || !aligned(x) || !aligned(w))
    return invalid_argument("gemv pointer (null or x / w not 16-byte aligned)", 0);
  if (mma) {
    if (m <= 16) return detail::run_gemm_rows_mma<2>(x, w, bias, y, m, n, k, gelu, seg, stream);
    if (m <= 24) return detail::run_gemm_rows_mma<3>(x, w, bias, y, m, n, k, gelu, seg, stream);
    return detail::run_gemm_rows_mma<4>(x, w, bias, y, m, n, k, gelu, seg, stream);
  }
  ELI_DISPATCH_DTYPE(dtype, T, {
    if (m == 1) return detail::run_gemv<T, 1>(x, w, bias, y, m, n, k, gelu, seg, stream);
    if (m <= 2) return detail::run_gemv<T, 2>(x, w, bias, y, m, n, k, gelu, seg, stream);
    if (m <= 4) return detail::run_gemv<T, 4>(x, w, bias, y, m, n, k, gelu, seg, stream);
    return detail::run_gemv<T, 8>(x, w, bias, y, m, n, k, gelu, seg, stream);
  });
  return cudaSuccess;
}

}  // namespace eli::cuda
