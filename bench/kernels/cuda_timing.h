#pragma once
// Timing GPU work for Google Benchmark: CUDA events on the current stream, manual time.
// The kernel suites live in eli::kernel_bench, apart from the Benchmarker (eli::benchmark);
// Google Benchmark itself is ::benchmark, written with the leading :: here for that reason.

#ifdef ELI_WITH_CUDA
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

namespace eli::kernel_bench {

/// Runs fn twice to warm up, then times one call per iteration with CUDA events.
template <class F>
void time_cuda(::benchmark::State& state, F&& fn) {
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  fn();
  fn();
  cudaStreamSynchronize(stream);
  for (auto _ : state) {
    cudaEventRecord(start, stream);
    fn();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) state.SkipWithError(cudaGetErrorString(err));
}

/// Reports `bytes` moved per iteration as bytes_per_second (read + written).
inline void set_bytes(::benchmark::State& state, double bytes) {
  state.counters["bytes_per_second"] = ::benchmark::Counter(
      bytes, ::benchmark::Counter::kIsIterationInvariantRate, ::benchmark::Counter::OneK::kIs1000);
}

}  // namespace eli::kernel_bench
#endif  // ELI_WITH_CUDA
