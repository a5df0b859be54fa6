#pragma once
/// Fused decode attention (flash-decoding): grid (split, head, batch); each block scores one
/// split of one sequence's tokens straight from the stored codes (scores.cuh), keeps the
/// softmax partials (max, sum, unnormalized output) in fp32 (values.cuh), and a second kernel
/// merges the splits with the step's new token. The pieces: attention/config.cuh (constants),
/// attention/operand.cuh (reading a K or V row), attention/mma.cuh (register-level helpers).

#include <cmath>
#include <type_traits>

#include "attention/scores.cuh"
#include "attention/values.cuh"
#include "quant.cuh"

namespace eli::cuda::detail {

/// s_row[i] = the storage row of slot start + i of sequence b, head h, for i < npad (slots past
/// n repeat the last row).
__device__ __forceinline__ void fill_rows(const RowMap& map, int b, int h, int start, int n,
                                          int npad, uint32_t* s_row) {
  constexpr int kSlotsPerThread = kMaxSplitLen / kAttnThreads;
  const int tid = threadIdx.x;
  {
    const RowCursor rows(map, b, h);
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
}

/// Softmax partials of one split: the score bias added when the score loop left it here
/// (kBiasInSoftmax; bias[i] of slot i as DecodeAttentionParams::bias, scaled by log2 e here;
/// null without one), mx = the largest logit, s_logit[i] = exp2(logit_i - mx) (0 on the padding
/// up to npad); returns their sum. For values_mma (kMmaV) also the fp16 weights p_t s_{t,j} of
/// each V scale group j into s_w (one row of w_stride per group). Thread tid handles slots
/// tid + k kAttnThreads in every pass, so no barrier separates the bias, the max and the
/// exponentials.
template <int kD, bool kMmaV, bool kBiasInSoftmax>
__device__ __forceinline__ float softmax_split(const DecodeAttentionParams& p,
                                               const uint32_t* s_row, const float* bias, int n,
                                               int npad, int vgroups, float* s_logit, float* s_red,
                                               __half* s_w, int w_stride, float& mx) {
  constexpr int kMaxGroups = kD / 32;
  constexpr int kSlotsPerThread = kMaxSplitLen / kAttnThreads;
  const int tid = threadIdx.x;
  // values_mma weighs token t by p_t s_{t,j} for each scale group j: the V scales of the slots
  // are loaded here, all at once (one 2-, 4- or 8-byte load per slot), so their latency
  // overlaps the max reduction (a loop with one load per iteration paid it 8 times). The load
  // width is chosen once (uniform branch) and every slot loads without a condition (slots
  // past the padding read row s_row[npad - 1]), so no test stands between the loads.
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
  mx = -INFINITY;
  if (kBiasInSoftmax && bias != nullptr) {
    for (int i = tid; i < n; i += kAttnThreads) {
      const float v = fmaf(bias[i], kLog2e, s_logit[i]);
      s_logit[i] = v;
      mx = fmaxf(mx, v);
    }
  } else {
    for (int i = tid; i < n; i += kAttnThreads) mx = fmaxf(mx, s_logit[i]);
  }
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
  return block_reduce<false>(sum, s_red);  // its barrier also publishes s_logit and s_w
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
  __shared__ float s_logit[kMaxSplitLen];
  __shared__ float s_red[kAttnThreads / 32];
  __shared__ float s_acc[kAttnThreads / 32][kD];
  static_assert(!kMmaV || (std::is_same_v<T, __half> && FV == Format::kInt4), "values_mma");
  // values_mma: the weights p_t s_{t,j} of this split, one row of w_stride per scale group j
  // along D, in dynamic shared memory sized by the launcher (values_mma_smem_bytes), so per-token
  // scales take one row and not the four that groups of 32 need at D = 128.
  extern __shared__ __align__(16) __half s_w[];
  const int w_stride = (split_len + kRowPad - 1) / kRowPad * kRowPad;

  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = int64_t(b) * p.H + h;
  const int64_t pidx = bh * gridDim.x + split;
  const int start = split * split_len;
  const int end = min(p.seq_lens[b], start + split_len);
  if (start >= end) {  // zeros, so the reduce kernel can load every split's output unconditionally
    if (threadIdx.x == 0) {
      part_ml[2 * pidx] = -INFINITY;
      part_ml[2 * pidx + 1] = 0.f;
    }
    for (int d = threadIdx.x; d < kD; d += kAttnThreads) part_acc[pidx * kD + d] = 0.f;
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
  fill_rows(p.map, b, h, start, n, npad, s_row);
  const float qscale = p.sm_scale * kLog2e;
  __shared__ __align__(16) QPlanes<kD> s_q;  // INT4 K: q in fixed point
  if constexpr (FK == Format::kInt4) prepare_q_dp4a<T, kD>(p, bh, qscale, s_q);
  __syncthreads();

  // ---- scores: logit_t (log2 domain) into shared memory
  if constexpr (std::is_same_v<T, __half> && FK == Format::kInt8)
    scores_mma<kD>(p, s_row, b, bh, start, n, qscale, s_logit);
  else if constexpr (FK == Format::kInt4)
    scores_dp4a<T, kD>(p, s_row, n, s_q, s_logit);
  else
    scores_fp32<T, kD, FK>(p, s_row, b, bh, start, n, qscale, s_logit);
  __syncthreads();

  // ---- softmax partials of this split; the padding slots get weight 0
  const int vgroups = kMmaV && p.v.tensor_scale <= 0.f ? kD / p.v.group : 1;
  float mx;
  // The INT4 score loop leaves the bias to the softmax pass (scores_dp4a).
  constexpr bool kBiasInSoftmax = FK == Format::kInt4;
  const float* bias =
      kBiasInSoftmax && p.bias != nullptr ? p.bias + int64_t(b) * p.bias_stride + start : nullptr;
  const float sum = softmax_split<kD, kMmaV, kBiasInSoftmax>(p, s_row, bias, n, npad, vgroups,
                                                             s_logit, s_red, s_w, w_stride, mx);

  // ---- values: acc = sum_t p_t v_t
  if constexpr (kMmaV)
    // V rows staged in shared memory except beside the INT4 score loop at D = 128 (its
    // registers: staging spilled there and was slower; values_mma).
    values_mma<kD, !(FK == Format::kInt4 && kD == 128)>(p, s_row, n, vgroups, s_w, w_stride,
                                                        s_acc[tid / 32]);
  else
    values_rows<T, kD, FV>(p, s_row, n, s_logit, s_acc);
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

/// Threads of the reduce kernel per head dimension: the splits are dealt round-robin to this many
/// groups of kD threads, so a long sequence's splits (128 at B = 1, context 32768, fp16) take
/// one or a few rounds of kReduceUnroll loads per thread instead of one per split. Up to
/// kReduceUnroll x kReduceGroups splits one round of 4 groups; beyond, a block of 1024 threads.
/// The launcher picks by the splits of the planned length (SplitPlan::planned_splits), not of
/// max_len: the order of the sums, and so the bits of the output, must not depend on the
/// longest sequence of the call.
constexpr int kReduceGroups = 4;
constexpr int kReduceUnroll = 8;
template <int kD>
constexpr int reduce_groups_wide() {
  return 1024 / kD;
}

/// One block of kGroups x kD threads per (b, h): merges the splits' (max, sum, acc) and,
/// when the params carry one, the step's new token at full precision (k_new, v_new [B, H, D]) as
/// one more key, so a decode step needs no separate merge (the eager ATen merge was ~10 launches a
/// layer); with store_k / store_v it also appends that token to the cache's storage, the append
/// without launches of its own: unquantized, thread d of group 0 writes element d; quantized, the
/// block's last two warps quantize the K and the V row (quantize_row_any: the quantize kernel's
/// arithmetic) while the others load the splits.
/// Thread (g, d) takes splits g, g + kGroups, ...: their (max, sum) and element d of their
/// outputs are all requested before the first reduction (empty splits wrote zeros), so the kernel
/// waits for memory about once. Splits without tokens (sum 0) are skipped exactly: the result does
/// not depend on how many empty splits the grid has, only on the split length.
template <typename T, int kD, int kGroups, bool kQuantAppend>
__global__ void __launch_bounds__(kGroups* kD)
    decode_attention_reduce_kernel(DecodeAttentionParams p, const float* __restrict__ part_acc,
                                   const float* __restrict__ part_ml, int num_splits) {
  allow_next_kernel();
  wait_prior_kernels();
  constexpr int kThreads = kGroups * kD, kWarps = kThreads / 32, kUnroll = kReduceUnroll;
  const int64_t bh = blockIdx.x;
  const int tid = threadIdx.x, d = tid % kD, grp = tid / kD;
  const float* ml = part_ml + 2 * bh * num_splits;
  const float* acc = part_acc + bh * num_splits * kD + d;
  // (max, sum, output element d) of splits s0, s0 + kGroups, ... (kUnroll of them).
  float m[kUnroll], l[kUnroll], a[kUnroll];
  auto load_splits = [&](int s0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int s = s0 + u * kGroups;
      const bool in = s < num_splits;
      m[u] = in ? ml[2 * s] : -INFINITY;
      l[u] = in ? ml[2 * s + 1] : 0.f;
      a[u] = in ? acc[int64_t(s) * kD] : 0.f;
    }
  };
  load_splits(grp);
  if (kQuantAppend && tid / 32 >= kWarps - 2) {
    static_assert(kWarps >= 2, "a warp each for K and V");
    const bool is_v = tid / 32 == kWarps - 1;
    const int b = int(bh / p.H), h = int(bh % p.H);
    const int64_t row = row_of(p.map, b, h, p.store_t0[b]);
    quantize_row_any<T, kD>(static_cast<const T*>(is_v ? p.v_new : p.k_new) + bh * kD, row,
                            is_v ? p.store_v : p.store_k);
  }
  const bool has_new = p.k_new != nullptr;
  float k_d = 0.f, v_d = 0.f, q_d = 0.f;
  if (has_new && grp == 0) {
    auto load_new = [&](const void* src) {
      return p.new_f32 ? static_cast<const float*>(src)[bh * kD + d]
                       : to_float(static_cast<const T*>(src)[bh * kD + d]);
    };
    k_d = load_new(p.k_new);
    v_d = load_new(p.v_new);
    q_d = to_float(static_cast<const T*>(p.q)[bh * kD + d]);
  }
  float mx = -INFINITY;
#pragma unroll
  for (int u = 0; u < kUnroll; ++u)
    if (l[u] > 0.f) mx = fmaxf(mx, m[u]);
  for (int s = grp + kUnroll * kGroups; s < num_splits; s += kGroups)
    if (ml[2 * s + 1] > 0.f) mx = fmaxf(mx, ml[2 * s]);
  // Block max, and q . k_new over group 0 (warp sums, then the kD / 32 warp sums in order).
  __shared__ float s_max[kWarps], s_dot[kD / 32];
  float x = q_d * k_d;
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    x += __shfl_xor_sync(0xffffffffu, x, off);
  }
  if (tid % 32 == 0) {
    s_max[tid / 32] = mx;
    if (grp == 0) s_dot[tid / 32] = x;
  }
  __syncthreads();
  float s_new = -INFINITY;
  if (has_new) {
    float dot = 0.f;
#pragma unroll
    for (int w = 0; w < kD / 32; ++w) dot += s_dot[w];
    s_new = dot * p.sm_scale * kLog2e;
    if (!kQuantAppend && p.store_k.data != nullptr && grp == 0) {
      const int b = int(bh / p.H), h = int(bh % p.H);
      const int64_t row = row_of(p.map, b, h, p.store_t0[b]);
      static_cast<T*>(p.store_k.data)[row * kD + d] = from_float<T>(k_d);
      static_cast<T*>(p.store_v.data)[row * kD + d] = from_float<T>(v_d);
    }
  }
  mx = s_new;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_max[w]);
  // This thread's splits in increasing order: the first kUnroll from registers, the rest
  // kUnroll at a time.
  float lsum = 0.f, o = 0.f;
  auto add = [&](float ms, float ls, float as) {
    if (ls > 0.f) {
      const float w = exp2f(ms - mx);
      lsum = fmaf(ls, w, lsum);
      o = fmaf(w, as, o);
    }
  };
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) add(m[u], l[u], a[u]);
  for (int s0 = grp + kUnroll * kGroups; s0 < num_splits; s0 += kUnroll * kGroups) {
    load_splits(s0);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) add(m[u], l[u], a[u]);
  }
  // The groups' partial sums, added in group order by group 0.
  __shared__ float s_l[kGroups][kD], s_o[kGroups][kD];
  s_l[grp][d] = lsum;
  s_o[grp][d] = o;
  __syncthreads();
  if (grp != 0) return;
  lsum = 0.f;
  o = 0.f;
#pragma unroll
  for (int g = 0; g < kGroups; ++g) {
    lsum += s_l[g][d];
    o += s_o[g][d];
  }
  if (has_new) {
    const float w = exp2f(s_new - mx);
    lsum += w;
    o = fmaf(w, v_d, o);
  }
  static_cast<T*>(p.out)[bh * kD + d] = from_float<T>(lsum > 0.f ? o / lsum : 0.f);
  if (p.lse != nullptr && d == 0) p.lse[bh] = lsum > 0.f ? (mx + log2f(lsum)) / kLog2e : -INFINITY;
}

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
    return reinterpret_cast<uintptr_t>(v.scales) % (2 * groups) == 0;
  }
}

/// Dynamic shared memory of a values_mma kernel: one fp16 weight row per scale group.
inline size_t values_mma_smem_bytes(const QuantView& v, int d, int split_len) {
  const int groups = v.tensor_scale > 0.f ? 1 : d / v.group;
  const int stride = (split_len + kRowPad - 1) / kRowPad * kRowPad;
  return size_t(groups) * stride * sizeof(__half);
}

/// Resident blocks per SM of the kernel launch_decode_attention_for<FK> takes for p (the
/// occupancy calculator, at the largest split's dynamic shared memory), for the split plan;
/// looked up once per kernel.
template <Format FK>
cudaError_t decode_attention_blocks_per_sm_for(const DecodeAttentionParams& p, int* blocks) {
  auto query = [](auto kernel, size_t smem) {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kAttnThreads, smem) !=
            cudaSuccess ||
        n < 1) {
      (void)cudaGetLastError();  // a failed query leaves a plan for one block per SM, no error
      n = 1;
    }
    return n;
  };
  ELI_DISPATCH_DTYPE(p.dtype, T,
                     ELI_DISPATCH_HEAD_DIM(
                         p.D, kD, ELI_DISPATCH_FORMAT(p.v.format, kFV, {
                           if (use_values_mma<T, kD, FK, kFV>(p.v)) {
                             static const int n = query(
                                 decode_attention_kernel<T, kD, FK, kFV, values_mma_ok<T, kFV>()>,
                                 size_t(kD / 32) * kMaxSplitLen * sizeof(__half));
                             *blocks = n;
                           } else {
                             static const int n =
                                 query(decode_attention_kernel<T, kD, FK, kFV, false>, 0);
                             *blocks = n;
                           }
                         })));
  return cudaSuccess;
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
            // A quantized append has an instantiation of its own, so its registers stay off the
            // other reduces (with one kernel for both, full_cache's 32 x 3968 step measured 0.7%
            // slower on an H200).
            const bool quant_append = p.store_k.data != nullptr && p.store_k.format != Format::kFp;
            auto reduce = [&](auto groups) {
              constexpr int kG = decltype(groups)::value;
              if (quant_append)
                launch(decode_attention_reduce_kernel<T, kD, kG, true>, dim3(p.B * p.H),
                       dim3(kG * kD), 0, stream, p, static_cast<const float*>(part_acc),
                       static_cast<const float*>(part_ml), plan.num_splits);
              else
                launch(decode_attention_reduce_kernel<T, kD, kG, false>, dim3(p.B * p.H),
                       dim3(kG * kD), 0, stream, p, static_cast<const float*>(part_acc),
                       static_cast<const float*>(part_ml), plan.num_splits);
            };
            if (plan.planned_splits <= kReduceGroups * kReduceUnroll)
              reduce(std::integral_constant<int, kReduceGroups>{});
            else
              reduce(std::integral_constant<int, reduce_groups_wide<kD>()>{});
          })));
  return cudaGetLastError();
}

}  // namespace eli::cuda::detail
