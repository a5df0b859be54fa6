#include "eli/benchmark/shared_prefix.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include <algorithm>

#include "eli/error.h"

namespace eli::benchmark {

void SharedPrefixConfig::validate() const {
  ELI_CHECK(requests >= 1, "SharedPrefixConfig.requests = {} must be >= 1", requests);
  ELI_CHECK(prefix_tokens >= 1, "SharedPrefixConfig.prefix_tokens = {} must be >= 1",
            prefix_tokens);
  ELI_CHECK(own_tokens >= 1, "SharedPrefixConfig.own_tokens = {} must be >= 1", own_tokens);
  ELI_CHECK(max_new_tokens >= 1, "SharedPrefixConfig.max_new_tokens = {} must be >= 1",
            max_new_tokens);
  ELI_CHECK(repetitions >= 1, "SharedPrefixConfig.repetitions = {} must be >= 1", repetitions);
  generation.validate();
}

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

std::vector<SharedPrefixRow> run_shared_prefix(const model::GPT2& model,
                                               const SharedPrefixConfig& cfg) {
  cfg.validate();
  const int64_t vocab = model.config().vocab_size;
  ELI_CHECK(
      cfg.prefix_tokens + cfg.own_tokens + cfg.max_new_tokens - 1 <= model.config().n_positions,
      "shared prefix: {} + {} prompt tokens + {} new tokens exceed the model's "
      "n_positions = {}",
      cfg.prefix_tokens, cfg.own_tokens, cfg.max_new_tokens, model.config().n_positions);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed);
  auto ids = [&](int64_t n) {
    const at::Tensor t = at::randint(vocab, {n}, gen, at::TensorOptions().dtype(at::kLong));
    return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
  };
  const std::vector<int64_t> system = ids(cfg.prefix_tokens);
  // A batch of requests: the system prompt + fresh tokens of their own.
  auto batch = [&] {
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t i = 0; i < cfg.requests; ++i) {
      auto p = system;
      const auto own = ids(cfg.own_tokens);
      p.insert(p.end(), own.begin(), own.end());
      prompts.push_back(std::move(p));
    }
    return prompts;
  };
  const Generator generator(model);
  std::vector<SharedPrefixRow> rows;
  for (const bool paged : {false, true}) {
    GenerationConfig g = cfg.generation;
    g.method = paged ? cfg.paged_method : "full_cache";
    g.max_new_tokens = cfg.max_new_tokens;
    g.stop_tokens.clear();
    g.cache.prefix_reuse = paged;
    if (paged) {
      // A pool kept across the batches, of the blocks a batch needs: the prefix's full blocks
      // (shared) and each request's blocks past them.
      const int64_t bs = generator.make_cache_for(g, 1)->prefix_block();
      ELI_CHECK(bs > 0, "shared prefix: '{}' is not a paged cache with prefix reuse",
                cfg.paged_method);
      const int64_t shared = cfg.prefix_tokens / bs;
      const int64_t own =
          (cfg.prefix_tokens + cfg.own_tokens + cfg.max_new_tokens - 1 + bs - 1) / bs - shared;
      g.cache.pool_blocks = static_cast<int>(shared + cfg.requests * own);
      g.cache.pool = generator.make_cache_for(g, cfg.requests)->block_pool();
    }
    generator.generate(batch(), g);  // warm-up (and, paged, the system prompt published)
    SharedPrefixRow row;
    row.method = g.method;
    row.prefix_reuse = paged;
    row.prompt_tokens = cfg.requests * (cfg.prefix_tokens + cfg.own_tokens);
    std::vector<double> ttft, tps;
    GenerationResult r;
    for (int rep = 0; rep < cfg.repetitions; ++rep) {
      r = generator.generate(batch(), g);
      ttft.push_back(r.timing.prefill_ms);
      double ms = 0;
      for (double t : r.timing.decode_ms) ms += t;
      tps.push_back(ms > 0 ? static_cast<double>(cfg.requests) *
                                 static_cast<double>(r.timing.decode_ms.size()) / (ms / 1e3)
                           : 0.0);
    }
    row.cache_name = r.cache_name;
    row.prefill_tokens = r.prefill_tokens;
    row.reused_tokens = r.reused_tokens;
    const CacheStats& s = r.cache_stats;
    row.kv_bytes_held = s.allocated_bytes();  // paged: the kept pool, sized to the work
    row.ttft_ms = median(ttft);
    row.decode_tokens_per_s = median(tps);
    rows.push_back(row);
  }
  return rows;
}

std::string format_shared_prefix(const std::vector<SharedPrefixRow>& rows,
                                 const SharedPrefixConfig& cfg) {
  std::string out = fmt::format(
      "Shared prefix: {} requests x ({} shared + {} own tokens), {} new tokens each; the paged "
      "pool kept across batches\n",
      cfg.requests, cfg.prefix_tokens, cfg.own_tokens, cfg.max_new_tokens);
  out += fmt::format("{:<28} {:>10} {:>10} {:>10} {:>11} {:>10} {:>12}\n", "method", "computed",
                     "reused", "KV MB", "TTFT ms", "decode t/s", "vs full");
  const SharedPrefixRow* full = rows.empty() ? nullptr : &rows.front();
  for (const auto& r : rows) {
    std::string vs = "-";
    if (full != nullptr && &r != full && full->prefill_tokens > 0 && full->kv_bytes_held > 0) {
      vs = fmt::format(
          "{:.3f}x/{:.3f}x",
          static_cast<double>(r.prefill_tokens) / static_cast<double>(full->prefill_tokens),
          static_cast<double>(r.kv_bytes_held) / static_cast<double>(full->kv_bytes_held));
    }
    out +=
        fmt::format("{:<28} {:>10} {:>10} {:>10.1f} {:>11.2f} {:>10.0f} {:>12}\n", r.cache_name,
                    r.prefill_tokens, r.reused_tokens, static_cast<double>(r.kv_bytes_held) / 1e6,
                    r.ttft_ms, r.decode_tokens_per_s, vs);
  }
  out +=
      "(vs full: prompt positions computed / KV bytes allocated, as fractions of full_cache's)\n";
  return out;
}

}  // namespace eli::benchmark
