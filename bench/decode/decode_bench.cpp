// Decode-step time per KV-cache method at a few (batch, context) points.
//
// One iteration = one decode step: one new token per sequence through the model and the cache
// (for no_cache: the whole context recomputed). The context is refilled (untimed) every
// kRefill steps so it stays within [context, context + kRefill). Times are wall clock after a
// device synchronize (manual time). items/s = tokens/s over the batch.
//
// Model: $ELI_BENCH_MODEL if set, else random:gpt2 (124M shape) on CUDA and random:L6-E384-H6
// on the CPU. Device: $ELI_BENCH_DEVICE (default auto).
#include <benchmark/benchmark.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdlib>
#include <memory>

#include "eli/bench/memory.h"
#include "eli/eli.h"

namespace {

constexpr int kRefill = 64;

const eli::model::GPT2& bench_model() {
  static const eli::model::GPT2 m = [] {
    const char* dev_env = std::getenv("ELI_BENCH_DEVICE");
    const at::Device dev = eli::model::resolve_device(dev_env ? dev_env : "auto");
    const char* spec = std::getenv("ELI_BENCH_MODEL");
    const std::string s = spec ? spec : (dev.is_cuda() ? "random:gpt2" : "random:L6-E384-H6");
    return eli::model::GPT2::from_spec(s, dev, eli::model::default_dtype(dev), 1);
  }();
  return m;
}

void BM_DecodeStep(benchmark::State& state, const std::string& method) {
  const auto& m = bench_model();
  const int64_t batch = state.range(0), context = state.range(1);
  if (context + kRefill > m.config().n_positions) {
    state.SkipWithError("context + refill window exceeds n_positions");
    return;
  }
  c10::InferenceMode guard;
  const at::Device dev = m.device();
  const at::Tensor prompt =
      at::randint(m.config().vocab_size, {batch, context}, at::TensorOptions().dtype(at::kLong))
          .to(dev);
  const at::Tensor step_ids =
      at::randint(m.config().vocab_size, {batch, kRefill}, at::TensorOptions().dtype(at::kLong))
          .to(dev);
  eli::GenerationConfig cfg;
  cfg.method = method;
  const eli::Generator gen(m);
  std::unique_ptr<eli::KVCache> cache = gen.make_cache_for(cfg, batch);
  at::Tensor full = prompt;  // no_cache: the growing sequence
  int64_t step = 0;
  auto refill = [&] {
    step = 0;
    if (cache) {
      cache->reset();
      m.forward_last(prompt, 0, cache.get());
    } else {
      full = prompt;
    }
    eli::bench::synchronize(dev);
  };
  refill();
  for (auto _ : state) {
    if (step == kRefill) refill();
    const at::Tensor next = step_ids.narrow(1, step, 1);
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor logits;
    if (cache) {
      logits = m.forward_last(next, context + step, cache.get());
    } else {
      full = at::cat({full, next}, 1);
      logits = m.forward_last(full, 0, nullptr);
    }
    eli::bench::synchronize(dev);
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    benchmark::DoNotOptimize(logits);
    ++step;
  }
  state.SetItemsProcessed(state.iterations() * batch);
  if (cache) {
    const eli::CacheStats s = cache->stats();
    state.counters["cache_MB"] = static_cast<double>(s.total_bytes()) / (1 << 20);
    state.counters["bytes_per_token"] =
        s.tokens_seen > 0 ? static_cast<double>(s.total_bytes()) / (batch * s.tokens_seen) : 0;
  }
  state.SetLabel(cache ? cache->name() : "recompute");
}

int register_all() {
  const std::vector<std::pair<int64_t, int64_t>> points{{1, 128}, {1, 512}, {8, 512}};
  for (const std::string& method : eli::method_names()) {
    auto* b = benchmark::RegisterBenchmark(("decode/" + method).c_str(), BM_DecodeStep, method);
    for (const auto& [batch, ctx] : points) {
      if (method == "no_cache" && batch > 1) continue;  // recomputation: one point is enough
      b->Args({batch, ctx});
    }
    b->ArgNames({"batch", "ctx"})->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
