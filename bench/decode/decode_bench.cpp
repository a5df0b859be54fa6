// Decode-step time per KV-cache method at a few (batch, context) points.
//
// One iteration = one decode step: one new token per sequence through the model and the cache
// (for no_cache: the whole context recomputed). The context is refilled (untimed) every
// kRefill steps so it stays within [context, context + kRefill). Times are wall clock after a
// device synchronize (manual time). items_per_second = tokens/s over the batch;
// bytes_per_second = what a step must read from memory: every weight once plus the KV cache as
// stored (payload + scales + metadata), a lower bound that leaves activations out.
//
// shared_prefix/*: 32 requests sharing a 512-token prefix, paged with prefix reuse against
// full_cache (BM_SharedPrefix).
// generate_ragged / generate_uniform: a ragged batch's decode step against a uniform batch of
// the same total prompt tokens (BM_GenerateBatch).
//
// Model: $ELI_BENCH_MODEL if set, else random:gpt2 (124M shape) on CUDA and random:L6-E384-H6
// on the CPU. Device: $ELI_BENCH_DEVICE (default auto). Both, with eli's revision, are in the
// JSON context (--benchmark_format=json). Minimum time: --benchmark_min_time.
#include <benchmark/benchmark.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "eli/benchmark/memory.h"
#include "eli/benchmark/report.h"
#include "eli/eli.h"

namespace {

constexpr int kRefill = 64;

std::string& bench_model_spec() {
  static std::string spec;
  return spec;
}

const eli::model::GPT2& bench_model() {
  static const eli::model::GPT2 m = [] {
    const char* dev_env = std::getenv("ELI_BENCH_DEVICE");
    const at::Device dev = eli::model::resolve_device(dev_env ? dev_env : "auto");
    const char* spec = std::getenv("ELI_BENCH_MODEL");
    bench_model_spec() = spec ? spec : (dev.is_cuda() ? "random:gpt2" : "random:L6-E384-H6");
    return eli::model::GPT2::from_spec(bench_model_spec(), dev, eli::model::default_dtype(dev), 1);
  }();
  return m;
}

double weight_bytes(const eli::model::GPT2& m) {
  return static_cast<double>(m.num_parameters()) * static_cast<double>(c10::elementSize(m.dtype()));
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
    eli::benchmark::synchronize(dev);
  };
  refill();
  double bytes = 0;
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
    eli::benchmark::synchronize(dev);
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    benchmark::DoNotOptimize(logits);
    bytes += weight_bytes(m) + (cache ? static_cast<double>(cache->stats().total_bytes()) : 0.0);
    ++step;
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  if (cache) {
    const eli::CacheStats s = cache->stats();
    state.counters["cache_MB"] = static_cast<double>(s.total_bytes()) / (1 << 20);
    state.counters["bytes_per_token"] =
        s.tokens_seen > 0 ? static_cast<double>(s.total_bytes()) / (batch * s.tokens_seen) : 0;
  }
  state.SetLabel(cache ? cache->name() : "recompute");
}

// Ragged against uniform: one iteration = one Generator::generate of 32 new tokens per sequence
// (the decode loop users run: CUDA graphs on CUDA); the manual time is the median decode step.
// "ragged": 8 prompts of 5 .. 400 tokens (1605 in all); "uniform": 8 x 201 (1608 in all).
void BM_GenerateBatch(benchmark::State& state, const std::string& method, bool ragged) {
  const auto& m = bench_model();
  const std::vector<int64_t> lens = ragged
                                        ? std::vector<int64_t>{5, 60, 115, 170, 230, 285, 340, 400}
                                        : std::vector<int64_t>(8, 201);
  std::vector<std::vector<int64_t>> prompts;
  for (size_t b = 0; b < lens.size(); ++b) {
    std::vector<int64_t> p;
    for (int64_t i = 0; i < lens[b]; ++i) {
      p.push_back((i * 7919 + static_cast<int64_t>(b) * 104729 + 13) % m.config().vocab_size);
    }
    prompts.push_back(std::move(p));
  }
  eli::GenerationConfig cfg;
  cfg.method = method;
  cfg.max_new_tokens = 32;
  const eli::Generator gen(m);
  gen.generate(prompts, cfg);  // warm-up
  for (auto _ : state) {
    auto r = gen.generate(prompts, cfg);
    std::vector<double> t = r.timing.decode_ms;
    std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2), t.end());
    state.SetIterationTime(t[t.size() / 2] / 1000.0);
    state.SetLabel(r.cache_name);
  }
  state.counters["prompt_tokens"] = 1605 + (ragged ? 0 : 3);
}

// The shared-prefix workload: 32 requests, a 512-token system prompt + 32 tokens of their own,
// 16 new tokens each, every iteration a batch of new requests. "paged_reuse": paged(block=16)
// with prefix reuse and a pool kept across the batches (the system prompt published by the
// warm-up batch); "full_cache": every prompt computed. The
// manual time is the time to first token (the prefill); counters: prompt positions computed,
// KV bytes held (paged: blocks held x bytes per block; full: its allocation) and decode tok/s.
void BM_SharedPrefix(benchmark::State& state, bool reuse) {
  const auto& m = bench_model();
  auto tokens = [&](int64_t n, int64_t seed) {
    std::vector<int64_t> p;
    for (int64_t i = 0; i < n; ++i) p.push_back((i * 7919 + seed * 104729 + 13) % 50000);
    return p;
  };
  const auto system = tokens(512, 1);
  // A batch of 32 requests whose own tokens no earlier batch had (seeds from `first` on).
  auto batch = [&](int64_t first) {
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t i = 0; i < 32; ++i) {
      auto p = system;
      const auto q = tokens(32, first + i);
      p.insert(p.end(), q.begin(), q.end());
      prompts.push_back(std::move(p));
    }
    return prompts;
  };
  eli::GenerationConfig cfg;
  cfg.method = reuse ? "paged(block=16)" : "full_cache";
  cfg.max_new_tokens = 16;
  const eli::Generator gen(m);
  if (reuse) cfg.cache.pool = gen.make_cache_for(cfg, 32)->block_pool();
  gen.generate(batch(1000), cfg);  // warm-up: earlier requests with the same system prompt
  eli::GenerationResult r;
  int64_t next = 2000;
  for (auto _ : state) {
    r = gen.generate(batch(next), cfg);
    next += 32;
    state.SetIterationTime(r.timing.prefill_ms / 1000.0);
  }
  const eli::CacheStats& s = r.cache_stats;
  const double held = reuse ? static_cast<double>(s.blocks_in_use) *
                                  static_cast<double>(s.allocated_bytes()) /
                                  static_cast<double>(s.blocks_total + 1)
                            : static_cast<double>(s.allocated_bytes());
  double decode_ms = 0;
  for (double t : r.timing.decode_ms) decode_ms += t;
  state.counters["prefill_tokens"] = static_cast<double>(r.prefill_tokens);
  state.counters["kv_MB_held"] = held / (1 << 20);
  state.counters["decode_tok_s"] =
      decode_ms > 0 ? 32.0 * static_cast<double>(r.timing.decode_ms.size()) / (decode_ms / 1e3) : 0;
  state.SetLabel(r.cache_name);
}

int register_all() {
  for (bool reuse : {false, true}) {
    benchmark::RegisterBenchmark(reuse ? "shared_prefix/paged_reuse" : "shared_prefix/full_cache",
                                 BM_SharedPrefix, reuse)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(5);
  }
  for (const std::string method : {"full_cache", "quant_int8", "quant_int4", "paged_attention",
                                   "sliding_window", "chunked_cache"}) {
    for (bool ragged : {false, true}) {
      benchmark::RegisterBenchmark(
          ((ragged ? "generate_ragged/" : "generate_uniform/") + method).c_str(), BM_GenerateBatch,
          method, ragged)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(3);
    }
  }
  const std::vector<std::pair<int64_t, int64_t>> points{{1, 128}, {1, 512}, {8, 512}};
  for (const std::string& method : eli::method_names()) {
    auto* b = benchmark::RegisterBenchmark(("decode/" + method).c_str(), BM_DecodeStep, method);
    for (const auto& [batch, ctx] : points) {
      if (method == "no_cache" && batch > 1) continue;  // recomputation: one point is enough
      b->Args({batch, ctx});
    }
    b->ArgNames({"batch", "ctx"})->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  return 0;
}
const int registered = register_all();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  try {
    const auto& m = bench_model();
    const eli::benchmark::RunContext c = eli::benchmark::RunContext::of(m, bench_model_spec());
    benchmark::AddCustomContext("eli_model", c.model);
    benchmark::AddCustomContext("eli_model_shape", c.model_shape);
    benchmark::AddCustomContext("eli_params", std::to_string(c.n_params));
    benchmark::AddCustomContext("eli_device", c.device + " (" + c.device_name + ")");
    benchmark::AddCustomContext("eli_dtype", c.dtype);
    benchmark::AddCustomContext("eli_git_revision", c.git_revision);
    benchmark::AddCustomContext("eli_torch", c.torch_version);
    benchmark::AddCustomContext("eli_threads", std::to_string(c.threads));
    benchmark::AddCustomContext("eli_refill_steps", std::to_string(kRefill));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
