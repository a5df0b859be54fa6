// Kernel benchmarks (bench_dequant.cpp, bench_attention.cpp). They time CUDA kernels with CUDA
// events: a build without CUDA, or a machine without a GPU, says so and exits 1 instead of
// running nothing. --split_sweep adds the decode attention at forced split lengths
// (bench_attention.cpp; several hundred benchmarks: give a --benchmark_filter).
#include <ATen/Context.h>
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>

#ifdef ELI_WITH_CUDA
namespace eli::kernel_bench {
void register_split_sweep();  // bench_attention.cpp
}
#endif

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
  // Our one flag, taken out before Google Benchmark sees the arguments.
  int n = 1;
  bool sweep = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--split_sweep") == 0) {
      sweep = true;
    } else {
      argv[n++] = argv[i];
    }
  }
  argc = n;
  if (sweep) eli::kernel_bench::register_split_sweep();
  ::benchmark::Initialize(&argc, argv);
  if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ::benchmark::RunSpecifiedBenchmarks();
  ::benchmark::Shutdown();
  return 0;
#endif
}
