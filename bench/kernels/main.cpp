// Kernel benchmarks (bench_dequant.cpp, bench_attention.cpp); empty without CUDA.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
