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
  const float mean = block_sum(sum, s_red) / float(n);
  float sq = 0.f;
  for (int i = threadIdx.x; i < n; i += kLnThreads) {
    const float d = s_x[i] - mean;
    sq = fmaf(d, d, sq);
  }
  const float rstd = rsqrtf(block_sum(sq, s_red) / float(n) + eps);
  T* o = out + row * n;
  for (int i = threadIdx.x; i < n; i += kLnThreads) {
    o[i] = from_float<T>(fmaf((s_x[i] - mean) * rstd, to_float(ln_w[i]), to_float(ln_b[i])));
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
