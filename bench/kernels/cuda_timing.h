#pragma once
// Timing GPU work for Google Benchmark: CUDA events on the current stream, manual time.
// The kernel suites live in eli::kernel_bench, apart from the Benchmarker (eli::benchmark);
// Google Benchmark itself is ::benchmark, written with the leading :: here for that reason.

#ifdef ELI_WITH_CUDA
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <benchmark/benchmark.h>
#include <c10/cuda/CUDAGuard.h>
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

/// GPU time of one call, for work shorter than its launch cost on the host: fn(0) .. fn(calls -
/// 1) are captured once into a CUDA graph (after one eager pass that warms up), and each
/// iteration times one replay with CUDA events, divided by `calls`. The caller makes the calls
/// read different buffers when one call's data would fit in the L2 cache (rotate), so the
/// replays measure device memory, not the cache. This is how a decode step runs its kernels
/// (one graph replay), so the launch gaps it leaves are the ones a step has.
template <class F>
void time_cuda_graph(::benchmark::State& state, int calls, F&& fn) {
  // The inputs were made on the default stream; the capture needs a stream of its own.
  cudaDeviceSynchronize();
  c10::cuda::CUDAStreamGuard guard(at::cuda::getStreamFromPool());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  for (int i = 0; i < calls; ++i) fn(i);
  cudaStreamSynchronize(stream);
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  for (int i = 0; i < calls; ++i) fn(i);
  graph.capture_end();
  graph.replay();
  cudaStreamSynchronize(stream);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (auto _ : state) {
    cudaEventRecord(start, stream);
    graph.replay();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3 / calls);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaDeviceSynchronize();  // before the caller frees the inputs on the default stream
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) state.SkipWithError(cudaGetErrorString(err));
}

/// How many copies of a working set of `bytes` to rotate over so that together they are at least
/// four times the L2 cache (at most 16).
inline int copies_beyond_l2(double bytes) {
  int dev = 0;
  cudaGetDevice(&dev);
  int l2 = 0;
  cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
  const int n = static_cast<int>((4.0 * l2 + bytes - 1) / bytes);
  return n < 1 ? 1 : (n > 16 ? 16 : n);
}

/// Reports `bytes` moved per iteration as bytes_per_second (read + written).
inline void set_bytes(::benchmark::State& state, double bytes) {
  state.counters["bytes_per_second"] = ::benchmark::Counter(
      bytes, ::benchmark::Counter::kIsIterationInvariantRate, ::benchmark::Counter::OneK::kIs1000);
}

}  // namespace eli::kernel_bench
#endif  // ELI_WITH_CUDA
