// Kernel benchmarks (bench_dequant.cpp, bench_attention.cpp). They time CUDA kernels with CUDA
// events: a build without CUDA, or a machine without a GPU, says so and exits 1 instead of
// running nothing.
#include <ATen/Context.h>
#include <benchmark/benchmark.h>

#include <cstdio>

int main(int argc, char** argv) {
#ifndef ELI_WITH_CUDA
  (void)argc;
  (void)argv;
  std::fprintf(stderr,
               "bench_kernels: the kernel suite needs a CUDA build of eli (ELI_WITH_CUDA, a "
               "LibTorch with CUDA; README 'Builds'); this build has no CUDA kernels\n");
  return 1;
#else
  if (!at::hasCUDA()) {
    std::fprintf(stderr, "bench_kernels: no CUDA device visible; the kernel suite needs a GPU\n");
    return 1;
  }
  ::benchmark::Initialize(&argc, argv);
  if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ::benchmark::RunSpecifiedBenchmarks();
  ::benchmark::Shutdown();
  return 0;
#endif
}
