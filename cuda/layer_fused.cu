// Fused elementwise stages of a GPT-2 block on the GPU: bias + residual + LayerNorm after the
// attention and MLP projections, bias + GELU after the first MLP GEMM. At decode sizes every
// stage is a launch of a few microseconds; fusing them takes ~5 launches off each layer.
#include <cuda_fp16.h>

#include "common.cuh"

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

/// LayerNorm of the row in s_x (n floats, `sum` this thread's share of their sum) into out.
template <typename T>
__device__ __forceinline__ void layernorm_tail(const float* s_x, float sum, int n,
                                               const T* __restrict__ ln_w,
                                               const T* __restrict__ ln_b, T* __restrict__ out,
                                               float eps, float* s_red) {
  const float mean = block_sum(sum, s_red) / float(n);
  float sq = 0.f;
  for (int i = threadIdx.x; i < n; i += kLnThreads) {
    const float d = s_x[i] - mean;
    sq = fmaf(d, d, sq);
  }
  const float rstd = rsqrtf(block_sum(sq, s_red) / float(n) + eps);
  for (int i = threadIdx.x; i < n; i += kLnThreads) {
    out[i] = from_float<T>(fmaf((s_x[i] - mean) * rstd, to_float(ln_w[i]), to_float(ln_b[i])));
  }
}

/// One block per row: x += half(y + bias) (rounded like the unfused GEMM-with-bias output),
/// then out = (x - mean) / sqrt(var + eps) * w + b, statistics in fp32 over the stored x.
template <typename T>
__global__ void __launch_bounds__(kLnThreads)
    bias_residual_layernorm_kernel(T* __restrict__ x, const T* __restrict__ y,
                                   const T* __restrict__ bias, const T* __restrict__ ln_w,
                                   const T* __restrict__ ln_b, T* __restrict__ out, int n,
                                   float eps) {
  extern __shared__ float s_x[];  // the updated row, n floats
  __shared__ float s_red[kLnThreads / 32];
  const int64_t row = blockIdx.x;
  T* xr = x + row * n;
  const T* yr = y + row * n;
  float sum = 0.f;
  for (int i = threadIdx.x; i < n; i += kLnThreads) {
    const float t = to_float(from_float<T>(to_float(yr[i]) + to_float(bias[i])));
    const T v = from_float<T>(to_float(xr[i]) + t);
    xr[i] = v;
    s_x[i] = to_float(v);
    sum += s_x[i];
  }
  layernorm_tail(s_x, sum, n, ln_w, ln_b, out + row * n, eps, s_red);
}

/// One block per row (b, t) of [B, T]: x = wte[ids] + wpe[pos0 + t] (one rounding, as the
/// unfused add), out = LayerNorm(x).
template <typename T>
__global__ void __launch_bounds__(kLnThreads)
    embed_layernorm_kernel(const T* __restrict__ wte, const T* __restrict__ wpe,
                           const int64_t* __restrict__ ids, const int64_t* __restrict__ pos0,
                           int t_len, const T* __restrict__ ln_w, const T* __restrict__ ln_b,
                           T* __restrict__ x, T* __restrict__ out, int n, float eps) {
  extern __shared__ float s_x[];
  __shared__ float s_red[kLnThreads / 32];
  const int64_t row = blockIdx.x;
  const T* te = wte + ids[row] * n;
  const T* pe = wpe + (*pos0 + row % t_len) * n;
  T* xr = x + row * n;
  float sum = 0.f;
  for (int i = threadIdx.x; i < n; i += kLnThreads) {
    const T v = from_float<T>(to_float(te[i]) + to_float(pe[i]));
    xr[i] = v;
    s_x[i] = to_float(v);
    sum += s_x[i];
  }
  layernorm_tail(s_x, sum, n, ln_w, ln_b, out + row * n, eps, s_red);
}

/// One block of 1024 threads per row: index of the largest element (NaN counts as largest, ties
/// go to the lowest index, as at::argmax).
template <typename T>
__global__ void __launch_bounds__(1024)
    argmax_rows_kernel(const T* __restrict__ x, int n, int64_t* __restrict__ out) {
  __shared__ float s_v[32];
  __shared__ int s_i[32];
  const T* xr = x + int64_t(blockIdx.x) * n;
  float best = -INFINITY;
  int best_i = n;
  auto better = [](float v, int i, float bv, int bi) {
    const bool vn = v != v, bn = bv != bv;
    if (vn != bn) return vn;
    return (vn || v == bv) ? i < bi : v > bv;
  };
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = to_float(xr[i]);
    if (better(v, i, best, best_i)) best = v, best_i = i;
  }
#pragma unroll
  for (int off = 16; off >= 1; off /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, off);
    const int i = __shfl_xor_sync(0xffffffffu, best_i, off);
    if (better(v, i, best, best_i)) best = v, best_i = i;
  }
  if (threadIdx.x % 32 == 0) s_v[threadIdx.x / 32] = best, s_i[threadIdx.x / 32] = best_i;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x / 32); ++w)
      if (better(s_v[w], s_i[w], best, best_i)) best = s_v[w], best_i = s_i[w];
    out[blockIdx.x] = best_i < n ? best_i : 0;
  }
}

/// y = gelu_tanh(half(y + bias)) elementwise (GPT-2's "gelu_new"), fp32 arithmetic.
template <typename T>
__global__ void bias_gelu_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t total,
                                 int n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const float v = to_float(from_float<T>(to_float(y[i]) + to_float(bias[i % n])));
  constexpr float kAlpha = 0.7978845608028654f;  // sqrt(2 / pi)
  const float inner = kAlpha * fmaf(0.044715f * v, v * v, v);
  y[i] = from_float<T>(0.5f * v * (1.f + tanhf(inner)));
}

}  // namespace detail

cudaError_t launch_embed_layernorm(DType dtype, const void* wte, const void* wpe,
                                   const int64_t* ids, const int64_t* pos0, int rows, int t_len,
                                   const void* ln_w, const void* ln_b, void* x, void* out, int n,
                                   float eps, cudaStream_t stream) {
  if (rows <= 0 || t_len <= 0 || rows % t_len != 0)
    return invalid_argument("embedding rows (a multiple of the tokens per sequence)", rows);
  if (n <= 0 || n > 12288) return invalid_argument("embedding width (valid: 1 .. 12288)", n);
  if (!wte || !wpe || !ids || !pos0 || !ln_w || !ln_b || !x || !out)
    return invalid_argument("embedding pointer (null)", 0);
  const size_t smem = size_t(n) * sizeof(float);
  ELI_DISPATCH_DTYPE(dtype, T, {
    detail::embed_layernorm_kernel<T><<<rows, detail::kLnThreads, smem, stream>>>(
        static_cast<const T*>(wte), static_cast<const T*>(wpe), ids, pos0, t_len,
        static_cast<const T*>(ln_w), static_cast<const T*>(ln_b), static_cast<T*>(x),
        static_cast<T*>(out), n, eps);
  });
  return cudaGetLastError();
}

cudaError_t launch_argmax_rows(DType dtype, const void* x, int rows, int n, int64_t* out,
                               cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return invalid_argument("argmax rows x width", int64_t(rows) * n);
  if (!x || !out) return invalid_argument("argmax pointer (null)", 0);
  ELI_DISPATCH_DTYPE(dtype, T, {
    detail::argmax_rows_kernel<T><<<rows, 1024, 0, stream>>>(static_cast<const T*>(x), n, out);
  });
  return cudaGetLastError();
}

cudaError_t launch_bias_residual_layernorm(DType dtype, void* x, const void* y, const void* bias,
                                           const void* ln_w, const void* ln_b, void* out,
                                           int rows, int n, float eps, cudaStream_t stream) {
  if (rows <= 0) return invalid_argument("layernorm rows", rows);
  if (n <= 0 || n > 12288) return invalid_argument("layernorm width (valid: 1 .. 12288)", n);
  if (!x || !y || !bias || !ln_w || !ln_b || !out)
    return invalid_argument("layernorm pointer (null)", 0);
  const size_t smem = size_t(n) * sizeof(float);
  ELI_DISPATCH_DTYPE(dtype, T, {
    detail::bias_residual_layernorm_kernel<T><<<rows, detail::kLnThreads, smem, stream>>>(
        static_cast<T*>(x), static_cast<const T*>(y), static_cast<const T*>(bias),
        static_cast<const T*>(ln_w), static_cast<const T*>(ln_b), static_cast<T*>(out), n, eps);
  });
  return cudaGetLastError();
}

cudaError_t launch_bias_gelu(DType dtype, void* y, const void* bias, int64_t rows, int n,
                             cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return invalid_argument("bias_gelu rows x width", rows * n);
  if (!y || !bias) return invalid_argument("bias_gelu pointer (null)", 0);
  const int64_t total = rows * n;
  constexpr int kThreads = 256;
  ELI_DISPATCH_DTYPE(dtype, T, {
    detail::bias_gelu_kernel<T><<<unsigned((total + kThreads - 1) / kThreads), kThreads, 0,
                                  stream>>>(static_cast<T*>(y), static_cast<const T*>(bias), total,
                                            n);
  });
  return cudaGetLastError();
}

}  // namespace eli::cuda
