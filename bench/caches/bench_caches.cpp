// One decode step (append one token + attend) per layout and codec, at the GPT-2 124M layer
// shape (12 heads, head_dim 64; one layer), for a few batch sizes and context lengths.
// bytes_per_second counts the cache bytes the step reads (stats().total_bytes()).
// Runs on CPU fp32; ELI_BENCH_DEVICE=cuda runs the same on fp16 CUDA tensors.

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "eli/kv_cache.h"

namespace {

const std::vector<std::string> kSpecs{
    "full_cache",           "paged_attention",  "sliding_window",       "chunked_cache",
    "quant_int8",           "quant_int4",       "quant_mixed",          "full+int8/per_tensor",
    "full+int4/group32/zp", "paged+int8",       "paged+int4",           "sliding_window+int4",
    "chunked_cache+int8",   "full+int4+rotate", "full+int8+residual=64"};

at::Device bench_device() {
  const char* d = std::getenv("ELI_BENCH_DEVICE");
  return d ? at::Device(d) : at::Device(at::kCPU);
}

void BM_DecodeStep(benchmark::State& state, const std::string& spec) {
  const int64_t batch = state.range(0), context = state.range(1);
  const eli::ModelShape shape{1, 12, 64, 1024};
  const at::Device dev = bench_device();
  const at::ScalarType dtype = dev.is_cuda() ? at::kHalf : at::kFloat;
  auto opts = at::TensorOptions().dtype(dtype).device(dev);
  auto cache = eli::make_cache(spec, shape, batch, {}, {}, dtype, dev);
  auto prefill = [&] {
    cache->reset();
    auto kv = at::randn({batch, 12, context, 64}, opts);
    cache->append(0, kv, kv);
    cache->attend(0, kv);
  };
  at::manual_seed(0);
  prefill();
  auto k = at::randn({batch, 12, 1, 64}, opts), q = at::randn({batch, 12, 1, 64}, opts);
  int64_t bytes = 0, grown = 0;
  for (auto _ : state) {
    if (++grown > 16) {  // keep the context near its nominal length
      state.PauseTiming();
      prefill();
      grown = 1;
      state.ResumeTiming();
    }
    cache->append(0, k, k);
    auto out = cache->attend(0, q);
    benchmark::DoNotOptimize(out.data_ptr());
    bytes += cache->stats().total_bytes();
  }
  state.SetBytesProcessed(bytes);
  state.SetLabel(cache->name());
}

const int kRegistered = [] {
  for (const auto& s : kSpecs) {
    benchmark::RegisterBenchmark(("decode_step/" + s).c_str(), BM_DecodeStep, s)
        ->ArgsProduct({{1, 4}, {128, 512, 1000}})
        ->ArgNames({"batch", "context"})
        ->Unit(benchmark::kMicrosecond);
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
