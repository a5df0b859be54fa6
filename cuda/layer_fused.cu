// Fused row stages of GPT-2 on the GPU: bias + residual + LayerNorm after the attention and MLP
// projections, embedding + the first LayerNorm, and the greedy argmax. At decode sizes every
// stage is a launch of a few microseconds, mostly latency; fusing takes launches off each layer.
// Also the merge of two partial attentions (a cache with two regions: summaries + ring, or
// history + residual ring), one launch where ATen took about twenty.
#include <cuda_fp16.h>

#include <algorithm>

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

namespace eli::cuda {

namespace detail {

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

/// One block per row: x += half(y + bias) (rounded like the unfused GEMM-with-bias output),
/// then out = (x - mean) / sqrt(var + eps) * w + b, statistics in fp32 over the stored x.
/// n <= kLnThreads * kPer.
template <typename T, int kPer>
__global__ void __launch_bounds__(kLnThreads)
    bias_residual_layernorm_kernel(T* __restrict__ x, const T* __restrict__ y,
                                   const T* __restrict__ bias, const T* __restrict__ ln_w,
                                   const T* __restrict__ ln_b, T* __restrict__ out, int n,
                                   float eps) {
  __shared__ float s_red[kLnThreads / 32];
  const int64_t row = blockIdx.x;
  T* xr = x + row * n;
  const T* yr = y + row * n;
  float xv[kPer], yv[kPer], bv[kPer], w[kPer], b[kPer], v[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {  // parameters: independent of the kernels before
    const int i = ln_index(j);
    const bool in = i < n;
    bv[j] = in ? to_float(bias[i]) : 0.f;
    w[j] = in ? to_float(ln_w[i]) : 0.f;
    b[j] = in ? to_float(ln_b[i]) : 0.f;
  }
  allow_next_kernel();
  wait_prior_kernels();
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = ln_index(j);
    const bool in = i < n;
    xv[j] = in ? to_float(xr[i]) : 0.f;
    yv[j] = in ? to_float(yr[i]) : 0.f;
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const T t = from_float<T>(xv[j] + to_float(from_float<T>(yv[j] + bv[j])));
    v[j] = to_float(t);
    if (ln_index(j) < n) xr[ln_index(j)] = t;
  }
  layernorm_regs<T, kPer>(v, w, b, n, eps, out + row * n, s_red);
}

/// One block per row (b, t) of [B, T]: x = wte[ids] + wpe[min(pos0[b * pos_stride] + t, n_pos - 1)]
/// (one rounding, as the unfused add), out = LayerNorm(x). n <= kLnThreads * kPer.
template <typename T, int kPer>
__global__ void __launch_bounds__(kLnThreads)
    embed_layernorm_kernel(const T* __restrict__ wte, const T* __restrict__ wpe,
                           const int64_t* __restrict__ ids, const int64_t* __restrict__ pos0,
                           int pos_stride, int n_pos, int t_len, const T* __restrict__ ln_w,
                           const T* __restrict__ ln_b, T* __restrict__ x, T* __restrict__ out,
                           int n, float eps) {
  __shared__ float s_red[kLnThreads / 32];
  allow_next_kernel();
  wait_prior_kernels();
  const int64_t row = blockIdx.x;
  const T* te = wte + ids[row] * n;
  const int64_t p = pos0[(row / t_len) * pos_stride] + row % t_len;
  const T* pe = wpe + (p < n_pos ? p : n_pos - 1) * n;
  T* xr = x + row * n;
  float tv[kPer], pv[kPer], w[kPer], b[kPer], v[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = ln_index(j);
    const bool in = i < n;
    tv[j] = in ? to_float(te[i]) : 0.f;
    pv[j] = in ? to_float(pe[i]) : 0.f;
    w[j] = in ? to_float(ln_w[i]) : 0.f;
    b[j] = in ? to_float(ln_b[i]) : 0.f;
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const T t = from_float<T>(tv[j] + pv[j]);
    v[j] = ln_index(j) < n ? to_float(t) : 0.f;
    if (ln_index(j) < n) xr[ln_index(j)] = t;
  }
  layernorm_regs<T, kPer>(v, w, b, n, eps, out + row * n, s_red);
}

/// (value, index) a is larger than b: NaN counts as largest, ties go to the lowest index, as
/// at::argmax. A total order, so the order in which elements are visited does not matter.
__device__ __forceinline__ bool argmax_better(float v, int i, float bv, int bi) {
  const bool vn = v != v, bn = bv != bv;
  if (vn != bn) return vn;
  return (vn || v == bv) ? i < bi : v > bv;
}

/// Index of the largest element of part blockIdx.x of row blockIdx.y (1024 threads): the row's
/// whole 16-byte vectors are cut into gridDim.x contiguous parts (part 0 also takes the elements
/// before the first vector boundary and after the last whole vector, one per thread). With one
/// part the index goes to out; with several, (value, index) of each part go to part_v / part_i
/// for argmax_merge_kernel: a row of a batch-32 step's logits was one block on one SM.
template <typename T>
__global__ void __launch_bounds__(1024)
    argmax_rows_kernel(const T* __restrict__ x, int n, int64_t* __restrict__ out,
                       float* __restrict__ part_v, int* __restrict__ part_i) {
  __shared__ float s_v[32];
  __shared__ int s_i[32];
  allow_next_kernel();
  wait_prior_kernels();
  const int row = blockIdx.y, part = blockIdx.x, parts = gridDim.x;
  const T* xr = x + int64_t(row) * n;
  float best = -INFINITY;
  int best_i = n;
  auto consider = [&](float v, int i) {
    if (argmax_better(v, i, best, best_i)) best = v, best_i = i;
  };
  // kUnroll 16-byte vectors in flight per thread before any comparison (a row is latency-bound
  // otherwise).
  constexpr int kVec = 16 / int(sizeof(T)), kUnroll = 4;
  const int head = min(n, int((16 - (reinterpret_cast<uintptr_t>(xr) & 15)) & 15) / int(sizeof(T)));
  const int nvec = (n - head) / kVec, tail = head + nvec * kVec;
  const int per = (nvec + parts - 1) / parts;
  const int vbeg = min(nvec, part * per), vend = min(nvec, vbeg + per);
  const int tid = threadIdx.x;
  if (part == 0) {
    if (tid < head) consider(to_float(xr[tid]), tid);
    if (tail + tid < n) consider(to_float(xr[tail + tid]), tail + tid);
  }
  const uint4* xv = reinterpret_cast<const uint4*>(xr + head);
  for (int v0 = vbeg + tid; v0 < vend; v0 += kUnroll * 1024) {
    uint4 raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (v0 + u * 1024 < vend) raw[u] = xv[v0 + u * 1024];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int v = v0 + u * 1024;
      if (v >= vend) break;
      const T* e = reinterpret_cast<const T*>(&raw[u]);
#pragma unroll
      for (int j = 0; j < kVec; ++j) consider(to_float(e[j]), head + v * kVec + j);
    }
  }
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, off);
    const int i = __shfl_xor_sync(0xffffffffu, best_i, off);
    if (argmax_better(v, i, best, best_i)) best = v, best_i = i;
  }
  if (threadIdx.x % 32 == 0) s_v[threadIdx.x / 32] = best, s_i[threadIdx.x / 32] = best_i;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x / 32); ++w)
      if (argmax_better(s_v[w], s_i[w], best, best_i)) best = s_v[w], best_i = s_i[w];
    if (parts == 1) {
      out[row] = best_i < n ? best_i : 0;
    } else {
      part_v[int64_t(row) * parts + part] = best;
      part_i[int64_t(row) * parts + part] = best_i;
    }
  }
}

/// One warp per row: the largest of the row's parts (<= 32) from argmax_rows_kernel.
__global__ void __launch_bounds__(32)
    argmax_merge_kernel(const float* __restrict__ part_v, const int* __restrict__ part_i, int parts,
                        int n, int64_t* __restrict__ out) {
  allow_next_kernel();
  wait_prior_kernels();
  const int row = blockIdx.x, lane = threadIdx.x;
  float best = lane < parts ? part_v[int64_t(row) * parts + lane] : -INFINITY;
  int best_i = lane < parts ? part_i[int64_t(row) * parts + lane] : n;
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, off);
    const int i = __shfl_xor_sync(0xffffffffu, best_i, off);
    if (argmax_better(v, i, best, best_i)) best = v, best_i = i;
  }
  if (lane == 0) out[row] = best_i < n ? best_i : 0;
}

}  // namespace detail

cudaError_t launch_embed_layernorm(DType dtype, const void* wte, const void* wpe,
                                   const int64_t* ids, const int64_t* pos0, int pos_stride,
                                   int n_pos, int rows, int t_len, const void* ln_w,
                                   const void* ln_b, void* x, void* out, int n, float eps,
                                   cudaStream_t stream) {
  if (rows <= 0 || t_len <= 0 || rows % t_len != 0)
    return invalid_argument("embedding rows (a multiple of the tokens per sequence)", rows);
  if (n <= 0 || n > 12288) return invalid_argument("embedding width (valid: 1 .. 12288)", n);
  if (n_pos <= 0 || (pos_stride != 0 && pos_stride != 1))
    return invalid_argument("embedding positions (rows of wpe >= 1, stride 0 or 1)", n_pos);
  if (!wte || !wpe || !ids || !pos0 || !ln_w || !ln_b || !x || !out)
    return invalid_argument("embedding pointer (null)", 0);
  ELI_DISPATCH_DTYPE(dtype, T, ELI_DISPATCH_LN_WIDTH(n, kPer, {
                       launch(detail::embed_layernorm_kernel<T, kPer>, dim3(rows),
                              dim3(detail::kLnThreads), 0, stream, static_cast<const T*>(wte),
                              static_cast<const T*>(wpe), ids, pos0, pos_stride, n_pos, t_len,
                              static_cast<const T*>(ln_w), static_cast<const T*>(ln_b),
                              static_cast<T*>(x), static_cast<T*>(out), n, eps);
                     }));
  return cudaGetLastError();
}

static int argmax_parts(int rows, int n) {
  // Blocks enough for about two an SM, each over at least 512 vectors of 8 elements, at most 32
  // parts a row (one warp merges them).
  const int vecs = n / 8;
  int parts = (2 * device_sm_count() + rows - 1) / rows;
  parts = std::min(parts, std::max(1, vecs / 512));
  return std::max(1, std::min(parts, 32));
}

size_t argmax_workspace_bytes(int rows, int n) {
  const int parts = rows > 0 && n > 0 ? argmax_parts(rows, n) : 1;
  return parts > 1 ? size_t(rows) * parts * (sizeof(float) + sizeof(int)) : 0;
}

cudaError_t launch_argmax_rows(DType dtype, const void* x, int rows, int n, int64_t* out,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return invalid_argument("argmax rows x width", int64_t(rows) * n);
  if (!x || !out) return invalid_argument("argmax pointer (null)", 0);
  const int parts = argmax_parts(rows, n);
  if (parts > 1 && (workspace == nullptr || workspace_bytes < argmax_workspace_bytes(rows, n)))
    return invalid_argument("argmax workspace bytes (too small)", (long long)workspace_bytes);
  float* part_v = static_cast<float*>(workspace);
  int* part_i = parts > 1 ? reinterpret_cast<int*>(part_v + size_t(rows) * parts) : nullptr;
  ELI_DISPATCH_DTYPE(dtype, T, {
    launch(detail::argmax_rows_kernel<T>, dim3(parts, rows), dim3(1024), 0, stream,
           static_cast<const T*>(x), n, out, part_v, part_i);
  });
  if (parts > 1)
    launch(detail::argmax_merge_kernel, dim3(rows), dim3(32), 0, stream,
           static_cast<const float*>(part_v), static_cast<const int*>(part_i), parts, n, out);
  return cudaGetLastError();
}

cudaError_t launch_bias_residual_layernorm(DType dtype, void* x, const void* y, const void* bias,
                                           const void* ln_w, const void* ln_b, void* out, int rows,
                                           int n, float eps, cudaStream_t stream) {
  if (rows <= 0) return invalid_argument("layernorm rows", rows);
  if (n <= 0 || n > 12288) return invalid_argument("layernorm width (valid: 1 .. 12288)", n);
  if (!x || !y || !bias || !ln_w || !ln_b || !out)
    return invalid_argument("layernorm pointer (null)", 0);
  ELI_DISPATCH_DTYPE(dtype, T, ELI_DISPATCH_LN_WIDTH(n, kPer, {
                       launch(detail::bias_residual_layernorm_kernel<T, kPer>, dim3(rows),
                              dim3(detail::kLnThreads), 0, stream, static_cast<T*>(x),
                              static_cast<const T*>(y), static_cast<const T*>(bias),
                              static_cast<const T*>(ln_w), static_cast<const T*>(ln_b),
                              static_cast<T*>(out), n, eps);
                     }));
  return cudaGetLastError();
}

namespace detail {
/// One thread per 16-byte vector of qkv [B, T, 3, H, D]: copied to q, k or v [B, H, T, D].
/// kVecs = 16-byte vectors per head row (D * sizeof(T) / 16).
template <typename T>
__global__ void split_heads_kernel(const uint4* __restrict__ qkv, uint4* __restrict__ q,
                                   uint4* __restrict__ k, uint4* __restrict__ v, int64_t total,
                                   int t_len, int heads, int vecs) {
  allow_next_kernel();
  wait_prior_kernels();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t per_part = int64_t(heads) * vecs;  // vectors of one of q, k, v in a row
  const int64_t row = i / (3 * per_part);          // b * T + t
  const int64_t in_row = i % (3 * per_part);
  const int part = int(in_row / per_part);
  const int h = int(in_row % per_part / vecs), j = int(in_row % vecs);
  const int64_t b = row / t_len, t = row % t_len;
  uint4* dst = part == 0 ? q : (part == 1 ? k : v);
  dst[((b * heads + h) * t_len + t) * vecs + j] = qkv[i];
}
/// merge_attention, one thread per output element of rows x D: the ATen sequence of
/// ops::ref::merge_attention in the same fp32 operations and order (no contraction into FMAs).
template <typename T>
__global__ void merge_attention_kernel(const T* __restrict__ o1, const float* __restrict__ lse1,
                                       const T* __restrict__ o2, const float* __restrict__ lse2,
                                       T* __restrict__ o, float* __restrict__ lse, int64_t total,
                                       int D) {
  allow_next_kernel();
  wait_prior_kernels();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t r = i / D;
  const float a = lse1[r], b = lse2[r];
  float m = fmaxf(a, b);
  if (isinf(m)) m = 0.f;  // both empty: weights 0, not NaN
  const float w1 = expf(__fsub_rn(a, m)), w2 = expf(__fsub_rn(b, m)), sum = __fadd_rn(w1, w2);
  const float safe = sum > 0.f ? sum : 1.f;
  const float x = __fadd_rn(__fmul_rn(to_float(o1[i]), __fdiv_rn(w1, safe)),
                            __fmul_rn(to_float(o2[i]), __fdiv_rn(w2, safe)));
  o[i] = from_float<T>(x);
  if (i % D == 0) lse[r] = __fadd_rn(m, logf(sum));
}
}  // namespace detail

cudaError_t launch_split_heads(DType dtype, const void* qkv, void* q, void* k, void* v, int batch,
                               int t_len, int heads, int head_dim, cudaStream_t stream) {
  if (batch <= 0 || t_len <= 0 || heads <= 0 || head_dim <= 0)
    return invalid_argument("split_heads batch x tokens x heads x head_dim",
                            int64_t(batch) * t_len * heads * head_dim);
  const int elem = dtype == DType::kHalf ? 2 : 4;
  if (head_dim * elem % 16 != 0)
    return invalid_argument("split_heads head_dim (a head row must be a multiple of 16 bytes)",
                            head_dim);
  for (const void* ptr :
       {qkv, static_cast<const void*>(q), static_cast<const void*>(k), static_cast<const void*>(v)})
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0)
      return invalid_argument("split_heads pointer (not 16-byte aligned)", 0);
  const int vecs = head_dim * elem / 16;
  const int64_t total = int64_t(batch) * t_len * 3 * heads * vecs;
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) return invalid_argument("split_heads size", total);
  ELI_DISPATCH_DTYPE(
      dtype, T,
      launch(detail::split_heads_kernel<T>, dim3(unsigned(blocks)), dim3(kThreads), 0, stream,
             static_cast<const uint4*>(qkv), static_cast<uint4*>(q), static_cast<uint4*>(k),
             static_cast<uint4*>(v), total, t_len, heads, vecs));
  return cudaGetLastError();
}

cudaError_t launch_merge_attention(DType dtype, const void* o1, const float* lse1, const void* o2,
                                   const float* lse2, void* o, float* lse, int64_t rows, int D,
                                   cudaStream_t stream) {
  if (rows <= 0 || D <= 0) return invalid_argument("merge_attention rows x head_dim", rows * D);
  const int64_t total = rows * D;
  constexpr int kThreads = 256;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) return invalid_argument("merge_attention size", total);
  ELI_DISPATCH_DTYPE(dtype, T,
                     launch(detail::merge_attention_kernel<T>, dim3(unsigned(blocks)),
                            dim3(kThreads), 0, stream, static_cast<const T*>(o1), lse1,
                            static_cast<const T*>(o2), lse2, static_cast<T*>(o), lse, total, D));
  return cudaGetLastError();
}

}  // namespace eli::cuda
