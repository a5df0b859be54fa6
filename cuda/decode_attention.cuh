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

#include "common.cuh"

namespace eli::cuda::detail {

constexpr int kAttnThreads = 128;
constexpr int kAttnUnroll = 4;
constexpr int kMaxSplitLen = 1024;
constexpr float kLog2e = 1.4426950408889634f;

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

/// Shared-memory staging of one split: the K and V rows as stored (copied with cp.async before
/// any math, so every byte of the split is in flight at once), the fp16 scales/minima, logits,
/// the per-warp partial outputs. Byte offsets; the host sizes the launch with the same function.
struct StageLayout {
  int k_codes, v_codes, logits, acc, red, k_scales, k_minima, v_scales, v_minima, total;
};
__host__ __device__ constexpr int align16(int x) { return (x + 15) & ~15; }
/// gk/gv: scales per row (0 = none: fp or per-tensor); mk/mv: minima present.
__host__ __device__ inline StageLayout stage_layout(int S, int D, int row_k, int row_v, int gk,
                                                    bool mk, int gv, bool mv) {
  StageLayout l{};
  int o = 0;
  l.k_codes = o;
  o += align16(S * row_k);
  l.v_codes = o;
  o += align16(S * row_v);
  l.logits = o;
  o += align16(S * 4);
  l.acc = o;
  o += (kAttnThreads / 32) * D * 4;
  l.red = o;
  o += 16 * 4;
  l.k_scales = o;
  o += align16(S * gk * 2);
  l.k_minima = o;
  o += mk ? align16(S * gk * 2) : 0;
  l.v_scales = o;
  o += align16(S * gv * 2);
  l.v_minima = o;
  o += mv ? align16(S * gv * 2) : 0;
  l.total = o;
  return l;
}
/// Scales per row that the kernel stages for one operand (0 for fp and per-tensor).
__host__ __device__ inline int staged_groups(const QuantView& v, int d) {
  return (v.format == Format::kFp || v.tensor_scale > 0.f || v.group <= 0) ? 0 : d / v.group;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

/// Issues the 16-byte copies of rows [start, start + n) of one operand into `dst` (row-major,
/// kRowBytes per row).
template <int kRowBytes>
__device__ __forceinline__ void stage_rows(const QuantView& v, const RowMap& map, int b, int h,
                                           int start, int n, uint8_t* dst) {
  constexpr int kChunks = kRowBytes / 16;
  const uint8_t* src = static_cast<const uint8_t*>(v.data);
  for (int i = threadIdx.x; i < n * kChunks; i += kAttnThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int64_t row = row_of(map, b, h, start + r);
    cp_async16(dst + r * kRowBytes + c * 16, src + row * kRowBytes + c * 16);
  }
}

/// Copies the fp16 scales (and minima) of rows [start, start + n) into shared memory.
__device__ __forceinline__ void stage_scales(const QuantView& v, int groups, const RowMap& map,
                                             int b, int h, int start, int n, __half* ss,
                                             __half* sm) {
  if (groups == 0) return;
  const __half* scales = static_cast<const __half*>(v.scales);
  const __half* minima = static_cast<const __half*>(v.minima);
#pragma unroll 4
  for (int i = threadIdx.x; i < n * groups; i += kAttnThreads) {
    const int r = i / groups, g = i - r * groups;
    const int64_t idx = row_of(map, b, h, start + r) * groups + g;
    ss[i] = scales[idx];
    if (minima != nullptr) sm[i] = minima[idx];
  }
}

/// (scale, bias) of a thread's 16-byte vector in staged row r: per-tensor/fp values or the
/// staged fp16 group values.
struct StagedScale {
  const __half* s;
  const __half* m;
  float ts;
  int groups, g;
  __device__ StagedScale(const QuantView& v, int d, int first_elem, const uint8_t* smem, int off_s,
                         int off_m) {
    groups = staged_groups(v, d);
    ts = v.format == Format::kFp ? 1.f : v.tensor_scale;
    s = groups ? reinterpret_cast<const __half*>(smem + off_s) : nullptr;
    m = (groups && v.minima != nullptr) ? reinterpret_cast<const __half*>(smem + off_m) : nullptr;
    g = groups ? first_elem / v.group : 0;
  }
  __device__ __forceinline__ void at(int r, float& sc, float& mn) const {
    sc = ts;
    mn = 0.f;
    if (s != nullptr) {
      const int i = r * groups + g;
      sc = __half2float(s[i]);
      if (m != nullptr) mn = __half2float(m[i]);
    }
  }
};

template <typename T, int kD, Format FK, Format FV>
__global__ void __launch_bounds__(kAttnThreads)
    decode_attention_kernel(DecodeAttentionParams p, int split_len, float* __restrict__ part_acc,
                            float* __restrict__ part_ml) {
  constexpr int kEK = Storage<FK, T>::kElemsPerVec, kEV = Storage<FV, T>::kElemsPerVec;
  constexpr int kTprK = kD / kEK, kTprV = kD / kEV;  // threads per row
  constexpr int kRowsK = kAttnThreads / kTprK, kRowsV = kAttnThreads / kTprV;
  constexpr int kRowBytesK = Storage<FK, T>::row_bytes(kD);
  constexpr int kRowBytesV = Storage<FV, T>::row_bytes(kD);
  static_assert(kTprK <= 32 && kTprV <= 32, "a row must fit in one warp");

  extern __shared__ __align__(16) uint8_t smem[];

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
  const int gk = staged_groups(p.k, kD), gv = staged_groups(p.v, kD);
  const StageLayout L = stage_layout(split_len, kD, kRowBytesK, kRowBytesV, gk,
                                     p.k.minima != nullptr, gv, p.v.minima != nullptr);
  float* s_logit = reinterpret_cast<float*>(smem + L.logits);
  float* s_acc = reinterpret_cast<float*>(smem + L.acc);
  float* s_red = reinterpret_cast<float*>(smem + L.red);

  // ---- stage: all of K, then all of V, in flight at once; scales by plain loads meanwhile
  stage_rows<kRowBytesK>(p.k, p.map, b, h, start, n, smem + L.k_codes);
  cp_async_commit();
  stage_rows<kRowBytesV>(p.v, p.map, b, h, start, n, smem + L.v_codes);
  cp_async_commit();
  stage_scales(p.k, gk, p.map, b, h, start, n, reinterpret_cast<__half*>(smem + L.k_scales),
               reinterpret_cast<__half*>(smem + L.k_minima));
  stage_scales(p.v, gv, p.map, b, h, start, n, reinterpret_cast<__half*>(smem + L.v_scales),
               reinterpret_cast<__half*>(smem + L.v_minima));
  cp_async_wait<1>();
  __syncthreads();

  // ---- scores: logit_t (log2 domain) into shared memory
  {
    const int lk = tid % kTprK, rk = tid / kTprK;
    const StagedScale sc(p.k, kD, lk * kEK, smem, L.k_scales, L.k_minima);
    const CodeDecoder dec = CodeDecoder::make(FK, p.k.minima != nullptr);
    const uint8_t* rows = smem + L.k_codes + lk * 16;
    const T* q = static_cast<const T*>(p.q) + bh * kD + lk * kEK;
    const float qscale = p.sm_scale * kLog2e;
    float qf[kEK];
    float qsum = 0.f;
#pragma unroll
    for (int i = 0; i < kEK; ++i) {
      qf[i] = to_float(q[i]) * qscale;
      qsum += qf[i];
    }
    for (int base = 0; base < n; base += kRowsK * kAttnUnroll) {
      uint4 raw[kAttnUnroll];
      float ks[kAttnUnroll], km[kAttnUnroll];
#pragma unroll
      for (int u = 0; u < kAttnUnroll; ++u) {
        const int r = base + u * kRowsK + rk;
        raw[u] = make_uint4(0, 0, 0, 0);
        ks[u] = 0.f;
        km[u] = 0.f;
        if (r < n) {
          raw[u] = *reinterpret_cast<const uint4*>(rows + r * kRowBytesK);
          sc.at(r, ks[u], km[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kAttnUnroll; ++u) {
        float c[kEK];
        decode_vec<FK, T>(raw[u], dec, c);
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < kEK; ++i) dot = fmaf(qf[i], c[i], dot);
        float logit = fmaf(ks[u], dot, km[u] * qsum);
#pragma unroll
        for (int off = kTprK / 2; off >= 1; off /= 2)
          logit += __shfl_xor_sync(0xffffffffu, logit, off);
        const int r = base + u * kRowsK + rk;
        if (lk == 0 && r < n) {
          if (p.bias != nullptr) logit = fmaf(p.bias[b * p.bias_stride + start + r], kLog2e, logit);
          s_logit[r] = logit;
        }
      }
    }
  }
  __syncthreads();

  // ---- softmax partials of this split
  float mx = -INFINITY;
  for (int i = tid; i < n; i += kAttnThreads) mx = fmaxf(mx, s_logit[i]);
  mx = block_reduce<true>(mx, s_red);
  float sum = 0.f;
  for (int i = tid; i < n; i += kAttnThreads) {
    const float e = exp2f(s_logit[i] - mx);
    s_logit[i] = e;
    sum += e;
  }
  cp_async_wait<0>();
  sum = block_reduce<false>(sum, s_red);  // its barrier publishes s_logit and the staged V

  // ---- values: acc = sum_t p_t v_t
  {
    const int lv = tid % kTprV, rv = tid / kTprV;
    const StagedScale sc(p.v, kD, lv * kEV, smem, L.v_scales, L.v_minima);
    const CodeDecoder dec = CodeDecoder::make(FV, p.v.minima != nullptr);
    const uint8_t* rows = smem + L.v_codes + lv * 16;
    float acc[kEV];
#pragma unroll
    for (int i = 0; i < kEV; ++i) acc[i] = 0.f;
    float macc = 0.f;
    for (int base = 0; base < n; base += kRowsV * kAttnUnroll) {
      uint4 raw[kAttnUnroll];
      float vs[kAttnUnroll], vm[kAttnUnroll], pw[kAttnUnroll];
#pragma unroll
      for (int u = 0; u < kAttnUnroll; ++u) {
        const int r = base + u * kRowsV + rv;
        raw[u] = make_uint4(0, 0, 0, 0);
        vs[u] = 0.f;
        vm[u] = 0.f;
        pw[u] = 0.f;
        if (r < n) {
          raw[u] = *reinterpret_cast<const uint4*>(rows + r * kRowBytesV);
          sc.at(r, vs[u], vm[u]);
          pw[u] = s_logit[r];
        }
      }
#pragma unroll
      for (int u = 0; u < kAttnUnroll; ++u) {
        float c[kEV];
        decode_vec<FV, T>(raw[u], dec, c);
        const float ps = pw[u] * vs[u];
#pragma unroll
        for (int i = 0; i < kEV; ++i) acc[i] = fmaf(ps, c[i], acc[i]);
        macc = fmaf(pw[u], vm[u], macc);
      }
    }
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
      for (int i = 0; i < kEV; ++i) s_acc[(tid / 32) * kD + lane * kEV + i] = acc[i];
    }
  }
  __syncthreads();
  for (int d = tid; d < kD; d += kAttnThreads) {
    float o = 0.f;
#pragma unroll
    for (int w = 0; w < kAttnThreads / 32; ++w) o += s_acc[w * kD + d];
    part_acc[pidx * kD + d] = o;
  }
  if (tid == 0) {
    part_ml[2 * pidx] = mx;
    part_ml[2 * pidx + 1] = sum;
  }
}

/// One block of kD threads per (b, h): merges the splits' (max, sum, acc).
template <typename T, int kD>
__global__ void decode_attention_reduce_kernel(const float* __restrict__ part_acc,
                                               const float* __restrict__ part_ml, int num_splits,
                                               T* __restrict__ out, float* __restrict__ lse) {
  const int64_t bh = blockIdx.x;
  const int d = threadIdx.x;
  const float* ml = part_ml + 2 * bh * num_splits;
  float mx = -INFINITY;
  for (int s = 0; s < num_splits; ++s)
    if (ml[2 * s + 1] > 0.f) mx = fmaxf(mx, ml[2 * s]);
  float l = 0.f, o = 0.f;
  for (int s = 0; s < num_splits; ++s) {
    const float ls = ml[2 * s + 1];
    if (ls > 0.f) {
      const float w = exp2f(ml[2 * s] - mx);
      l = fmaf(ls, w, l);
      o = fmaf(w, part_acc[(bh * num_splits + s) * kD + d], o);
    }
  }
  out[bh * kD + d] = from_float<T>(l > 0.f ? o / l : 0.f);
  if (lse != nullptr && d == 0) lse[bh] = l > 0.f ? (mx + log2f(l)) / kLog2e : -INFINITY;
}

/// Grid shape chosen by the launcher (see decode_attention.cu).
struct SplitPlan {
  int split_len;
  int num_splits;
  int smem_bytes;  // dynamic shared memory of the split kernel (stage_layout(split_len).total)
};

/// Launches both kernels for one K format; instantiated once per format in
/// decode_attention_{fp,int8,int4}.cu so the 36 kernels compile in parallel.
template <Format FK>
cudaError_t launch_decode_attention_for(const DecodeAttentionParams& p, const SplitPlan& plan,
                                        float* part_acc, float* part_ml, cudaStream_t stream) {
  const dim3 grid(plan.num_splits, p.H, p.B);
  ELI_DISPATCH_DTYPE(p.dtype, T,
                     ELI_DISPATCH_HEAD_DIM(
                         p.D, kD, ELI_DISPATCH_FORMAT(p.v.format, kFV, {
                           auto kernel = decode_attention_kernel<T, kD, FK, kFV>;
                           // Staging needs shared memory, not L1: ask for the largest carveout
                           // once per kernel (several blocks per SM each hold a whole split).
                           static const cudaError_t carve = cudaFuncSetAttribute(
                               kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                               int(cudaSharedmemCarveoutMaxShared));
                           if (carve != cudaSuccess) return carve;
                           kernel<<<grid, kAttnThreads, plan.smem_bytes, stream>>>(
                               p, plan.split_len, part_acc, part_ml);
                           decode_attention_reduce_kernel<T, kD><<<p.B * p.H, kD, 0, stream>>>(
                               part_acc, part_ml, plan.num_splits, static_cast<T*>(p.out), p.lse);
                         })));
  return cudaGetLastError();
}

}  // namespace eli::cuda::detail
