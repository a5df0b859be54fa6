#include "eli/benchmark/benchmarker.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <numeric>

#include "eli/benchmark/memory.h"
#include "eli/benchmark/metrics.h"
#include "eli/benchmark/quality.h"
#include "eli/error.h"

namespace eli::benchmark {

void BenchmarkConfig::validate() const {
  ELI_CHECK(warmup >= 0, "BenchmarkConfig.warmup = {} must be >= 0", warmup);
  ELI_CHECK(warmup_tokens >= 0, "BenchmarkConfig.warmup_tokens = {} must be >= 0", warmup_tokens);
  ELI_CHECK(repetitions >= 1, "BenchmarkConfig.repetitions = {} must be >= 1", repetitions);
  ELI_CHECK(eval_prefix >= 1, "BenchmarkConfig.eval_prefix = {} must be >= 1", eval_prefix);
  ELI_CHECK(eval_tokens >= 1, "BenchmarkConfig.eval_tokens = {} must be >= 1", eval_tokens);
  generation.validate();
}

std::vector<std::vector<int64_t>> make_prompt_batch(const std::vector<int64_t>& stream,
                                                    int64_t batch, int64_t len) {
  ELI_CHECK(!stream.empty(), "make_prompt_batch: the token stream is empty");
  ELI_CHECK(batch >= 1, "make_prompt_batch: batch = {} must be >= 1", batch);
  ELI_CHECK(len >= 1, "make_prompt_batch: prompt length = {} must be >= 1", len);
  const int64_t n = static_cast<int64_t>(stream.size());
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    out[b].reserve(static_cast<size_t>(len));
    for (int64_t i = 0; i < len; ++i) out[b].push_back(stream[(b * len + i) % n]);
  }
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

std::string prompts_key(const std::vector<std::vector<int64_t>>& prompts, int max_new_tokens) {
  std::string key = std::to_string(max_new_tokens);
  for (const auto& p : prompts) {
    key += '|';
    for (int64_t id : p) key += std::to_string(id) + ',';
  }
  return key;
}

// The batch's shape: batch size and each prompt's length, longest and total.
void describe_prompts(const std::vector<std::vector<int64_t>>& prompts, MethodResult& r) {
  r.batch = static_cast<int64_t>(prompts.size());
  r.prompt_lens.clear();
  for (const auto& p : prompts) r.prompt_lens.push_back(static_cast<int64_t>(p.size()));
  r.prompt_len =
      r.prompt_lens.empty() ? 0 : *std::max_element(r.prompt_lens.begin(), r.prompt_lens.end());
  r.prompt_tokens = std::accumulate(r.prompt_lens.begin(), r.prompt_lens.end(), int64_t{0});
}

bool ragged(const std::vector<int64_t>& lens) {
  return std::adjacent_find(lens.begin(), lens.end(), std::not_equal_to<>()) != lens.end();
}

}  // namespace

std::string prompt_lens_label(const MethodResult& r) {
  if (r.prompt_lens.empty()) return std::to_string(r.prompt_len);
  const auto [lo, hi] = std::minmax_element(r.prompt_lens.begin(), r.prompt_lens.end());
  return *lo == *hi ? std::to_string(*lo) : fmt::format("{}..{}", *lo, *hi);
}

void relative_to_full(std::vector<MethodResult>& results) {
  for (MethodResult& r : results) {
    r.memory_vs_full = kNaN;
    r.speed_vs_full = kNaN;
    if (!r.error.empty()) continue;
    for (const MethodResult& f : results) {
      if (method_kind(f.method) != MethodKind::kFullCache || !f.error.empty() ||
          f.batch != r.batch || f.prompt_len != r.prompt_len || f.prompt_lens != r.prompt_lens) {
        continue;
      }
      const double full_bytes = static_cast<double>(f.cache.total_bytes());
      if (full_bytes > 0)
        r.memory_vs_full = static_cast<double>(r.cache.total_bytes()) / full_bytes;
      r.speed_vs_full = r.decode_tokens_per_sec / f.decode_tokens_per_sec;
      break;
    }
  }
}

Benchmarker::Benchmarker(const model::GPT2& model, BenchmarkConfig cfg, const Tokenizer* tokenizer)
    : model_(&model), tok_(tokenizer), cfg_(std::move(cfg)) {
  cfg_.validate();
}

GenerationConfig Benchmarker::config_for(const std::string& method, int max_new_tokens) const {
  GenerationConfig g = cfg_.generation;
  g.method = method;
  g.max_new_tokens = max_new_tokens;
  g.stop_tokens.clear();
  return g;
}

std::vector<int64_t> Benchmarker::eval_stream() const {
  const int64_t want = static_cast<int64_t>(cfg_.eval_prefix) + cfg_.eval_tokens;
  const int64_t n = std::min<int64_t>(
      {want, static_cast<int64_t>(cfg_.eval_ids.size()), model_->config().n_positions});
  ELI_CHECK(n > cfg_.eval_prefix,
            "Benchmarker: the evaluation stream has {} usable tokens, but eval_prefix = {} needs "
            "at least one more",
            n, cfg_.eval_prefix);
  return {cfg_.eval_ids.begin(), cfg_.eval_ids.begin() + n};
}

Quality Benchmarker::stream_quality(const std::string& method) {
  if (!cfg_.quality || cfg_.eval_ids.empty()) return Quality{};
  auto it = stream_quality_.find(method);
  if (it != stream_quality_.end()) return it->second;
  const std::vector<int64_t> ids = eval_stream();
  const std::vector<int64_t> targets = stream_targets(ids, cfg_.eval_prefix);
  if (!full_stream_logits_.defined()) {
    full_stream_logits_ =
        stream_logits(*model_, ids, cfg_.eval_prefix, config_for("full_cache", 1));
  }
  const at::Tensor logits =
      method_kind(method) == MethodKind::kFullCache
          ? full_stream_logits_
          : stream_logits(*model_, ids, cfg_.eval_prefix, config_for(method, 1));
  Quality q;
  q.eval_prefix = cfg_.eval_prefix;
  q.eval_tokens = static_cast<int64_t>(targets.size());
  q.perplexity = perplexity(token_nll(logits, targets));
  q.full_perplexity = perplexity(token_nll(full_stream_logits_, targets));
  q.ppl_delta_pct = 100.0 * (q.perplexity / q.full_perplexity - 1.0);
  q.kl_vs_full = kl_divergence(full_stream_logits_, logits);
  q.top1_agreement = top1_agreement(full_stream_logits_, logits);
  stream_quality_[method] = q;
  return q;
}

const std::vector<std::vector<int64_t>>& Benchmarker::reference_output(
    const std::vector<std::vector<int64_t>>& prompts, int max_new_tokens) {
  const std::string key = prompts_key(prompts, max_new_tokens);
  auto it = reference_outputs_.find(key);
  if (it != reference_outputs_.end()) return it->second;
  const Generator gen(*model_);
  GenerationResult r = gen.generate(prompts, config_for("full_cache", max_new_tokens));
  return reference_outputs_[key] = std::move(r.tokens);
}

MethodResult Benchmarker::run_point(const std::vector<std::vector<int64_t>>& prompts,
                                    const std::string& method, int max_new_tokens) {
  const Generator gen(*model_);
  const GenerationConfig gcfg = config_for(method, max_new_tokens);
  MethodResult res;
  res.method = method;
  describe_prompts(prompts, res);
  res.warmup = cfg_.warmup;
  res.repetitions = cfg_.repetitions;

  // Warm-up runs prefill at full size and decode a few steps: allocator pools and caches are
  // then warm without paying for a whole generation.
  GenerationConfig warm = gcfg;
  if (cfg_.warmup_tokens > 0) warm.max_new_tokens = std::min(cfg_.warmup_tokens, max_new_tokens);
  for (int i = 0; i < cfg_.warmup; ++i) gen.generate(prompts, warm);

  const at::Device device = model_->device();
  CpuPeakMeter cpu;
  GpuPeakMeter gpu(device);
  gpu.start();
  cpu.start();
  std::vector<double> decode;
  GenerationResult last;
  for (int rep = 0; rep < cfg_.repetitions; ++rep) {
    synchronize(device);
    const auto t0 = Clock::now();
    last = gen.generate(prompts, gcfg);
    synchronize(device);
    res.total_ms_reps.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    res.ttft_ms_reps.push_back(last.timing.prefill_ms);
    const std::vector<double>& steps = last.timing.decode_ms;
    decode.insert(decode.end(), steps.begin(), steps.end());
    if (!steps.empty()) {
      const double ms = std::accumulate(steps.begin(), steps.end(), 0.0);
      res.decode_tokens_per_sec_reps.push_back(static_cast<double>(res.batch) *
                                               static_cast<double>(steps.size()) / (ms / 1000.0));
    }
  }
  const CpuPeak peak = cpu.stop();
  res.gpu_peak_mb = gpu.stop_mb();
  res.cpu_peak_mb = peak.peak_mb;
  res.cpu_start_mb = peak.start_mb;
  res.cpu_peak_source = peak.source;

  // Stop tokens are off, so every sequence generates the same number of tokens.
  res.new_tokens = last.tokens.empty() ? 0 : static_cast<int64_t>(last.tokens[0].size());
  int64_t generated = 0;
  std::vector<int64_t> seen;  // positions each sequence fed through the cache
  for (size_t b = 0; b < last.tokens.size(); ++b) {
    const int64_t n = static_cast<int64_t>(last.tokens[b].size());
    generated += n;
    seen.push_back(res.prompt_lens[b] + std::max<int64_t>(n - 1, 0));  // the last is never fed
  }
  res.total_ms = median(res.total_ms_reps);
  res.ttft_ms = median(res.ttft_ms_reps);
  res.prefill_tokens_per_sec = static_cast<double>(res.prompt_tokens) / (res.ttft_ms / 1000.0);
  res.tokens_per_sec = static_cast<double>(generated) / (res.total_ms / 1000.0);
  if (!decode.empty()) {
    res.decode_mean_ms = mean(decode);
    res.decode_p50_ms = percentile(decode, 50);
    res.decode_p90_ms = percentile(decode, 90);
    res.decode_p99_ms = percentile(decode, 99);
    const std::vector<double>& tps = res.decode_tokens_per_sec_reps;
    res.decode_tokens_per_sec = median(tps);
    res.decode_tokens_per_sec_stddev = stddev(tps);
    res.decode_tokens_per_sec_min = *std::min_element(tps.begin(), tps.end());
    res.decode_tokens_per_sec_max = *std::max_element(tps.begin(), tps.end());
    res.decode_tokens_per_sec_cv = res.decode_tokens_per_sec_stddev / mean(tps);
  }
  res.cache = last.cache_stats;
  res.cache_mb = to_mb(static_cast<double>(res.cache.total_bytes()));
  res.cache_allocated_mb = to_mb(static_cast<double>(res.cache.allocated_bytes()));
  res.bytes_per_token = bytes_per_token(res.cache, seen);
  res.bytes_per_stored_token =
      ragged(res.prompt_lens) ? kNaN : bytes_per_stored_token(res.cache, res.batch);
  res.cache_name = last.cache_name;
  res.output_ids = last.tokens;

  if (cfg_.quality) {
    const std::string key = prompts_key(prompts, max_new_tokens);
    if (method_kind(method) == MethodKind::kFullCache && !reference_outputs_.count(key)) {
      reference_outputs_[key] = last.tokens;
    }
    const auto& ref = reference_output(prompts, max_new_tokens);
    Quality q = stream_quality(method);
    double rouge = 0, edit = 0;
    int64_t first = -1;
    for (size_t b = 0; b < ref.size(); ++b) {
      rouge += rouge_l_f1(ref[b], last.tokens[b]);
      edit += edit_similarity(ref[b], last.tokens[b]);
      const int64_t d = first_divergence(ref[b], last.tokens[b]);
      if (d >= 0 && (first < 0 || d < first)) first = d;
    }
    q.rouge_l = rouge / static_cast<double>(ref.size());
    q.edit_similarity = edit / static_cast<double>(ref.size());
    q.first_divergence = first;
    res.quality = q;
  }
  if (tok_ != nullptr && !last.tokens.empty() &&
      tok_->vocab_size() == model_->config().vocab_size) {
    res.sample_text = tok_->decode(last.tokens[0]);
  }
  return res;
}

MethodResult Benchmarker::benchmark_ids(const std::vector<std::vector<int64_t>>& prompts,
                                        const std::string& method, int max_new_tokens) {
  ELI_CHECK(max_new_tokens >= 1, "benchmark: max_new_tokens = {} must be >= 1", max_new_tokens);
  return run_point(prompts, method, max_new_tokens);
}

MethodResult Benchmarker::benchmark_method(const std::vector<std::string>& prompts,
                                           const std::string& method, int max_new_tokens) {
  ELI_CHECK(tok_ != nullptr, "benchmark_method: text prompts need a tokenizer");
  std::vector<std::vector<int64_t>> ids;
  for (const auto& p : prompts) ids.push_back(tok_->encode(p));
  return benchmark_ids(ids, method, max_new_tokens);
}

QuantizedGeneration Benchmarker::generate_with_quantized_kv(const std::vector<int64_t>& prompt_ids,
                                                            int max_new_tokens,
                                                            const std::string& mode) {
  QuantizedGeneration out;
  if (mode == "int8" || mode == "int4" || mode == "mixed") {
    out.method = "quant_" + mode;
  } else {
    ELI_FAIL("generate_with_quantized_kv: mode '{}' (valid: int8, int4, mixed)", mode);
  }
  const Generator gen(*model_);
  GenerationConfig g = config_for(out.method, max_new_tokens);
  g.stop_tokens = cfg_.generation.stop_tokens;
  GenerationResult r = gen.generate({prompt_ids}, g);
  out.tokens = r.tokens[0];
  out.n_tokens = static_cast<int64_t>(out.tokens.size());
  out.cache = r.cache_stats;
  out.cache_mb = to_mb(static_cast<double>(r.cache_stats.total_bytes()));
  if (tok_ != nullptr) out.text = tok_->decode(out.tokens);
  return out;
}

QuantizedGeneration Benchmarker::generate_with_quantized_kv(const std::string& prompt,
                                                            int max_new_tokens,
                                                            const std::string& mode) {
  ELI_CHECK(tok_ != nullptr, "generate_with_quantized_kv: a text prompt needs a tokenizer");
  return generate_with_quantized_kv(tok_->encode(prompt), max_new_tokens, mode);
}

std::vector<MethodResult> Benchmarker::compare_ids(const std::vector<std::vector<int64_t>>& prompts,
                                                   const std::vector<std::string>& methods,
                                                   const SweepConfig& sweep) {
  ELI_CHECK(!prompts.empty(), "compare: no prompts");
  ELI_CHECK(!methods.empty(), "compare: no methods");
  ELI_CHECK(sweep.max_new_tokens >= 1, "compare: max_new_tokens = {} must be >= 1",
            sweep.max_new_tokens);
  struct Point {
    std::vector<std::vector<int64_t>> prompts;
  };
  for (size_t i = 0; i < prompts.size(); ++i) {
    ELI_CHECK(!prompts[i].empty(), "compare: prompt {} is empty", i);
  }
  std::vector<Point> points;
  const std::vector<int64_t> batches =
      sweep.batch_sizes.empty() ? std::vector<int64_t>{static_cast<int64_t>(prompts.size())}
                                : sweep.batch_sizes;
  for (int64_t b : batches) ELI_CHECK(b >= 1, "compare: batch size {} must be >= 1", b);
  if (sweep.prompt_lens.empty()) {
    // The prompts as given; a batch size cycles through them.
    for (int64_t b : batches) {
      Point pt;
      for (int64_t i = 0; i < b; ++i)
        pt.prompts.push_back(prompts[static_cast<size_t>(i) % prompts.size()]);
      points.push_back(std::move(pt));
    }
  } else {
    // Asked for: rows of exactly these lengths, cut from the prompts joined into one stream.
    std::vector<int64_t> stream;
    for (const auto& p : prompts) stream.insert(stream.end(), p.begin(), p.end());
    for (int64_t b : batches) {
      for (int64_t len : sweep.prompt_lens) points.push_back({make_prompt_batch(stream, b, len)});
    }
  }
  std::vector<MethodResult> results;
  const int64_t total = static_cast<int64_t>(points.size() * methods.size());
  for (const Point& pt : points) {
    for (const std::string& m : methods) {
      MethodResult shape;
      describe_prompts(pt.prompts, shape);
      if (progress_) {
        progress_(static_cast<int64_t>(results.size()), total,
                  fmt::format("{} B={} P={}", m, shape.batch, prompt_lens_label(shape)));
      }
      try {
        results.push_back(run_point(pt.prompts, m, sweep.max_new_tokens));
      } catch (const std::exception& e) {
        MethodResult r = std::move(shape);
        r.method = m;
        r.error = e.what();
        results.push_back(std::move(r));
      }
    }
  }
  if (progress_) progress_(total, total, "done");
  relative_to_full(results);
  return results;
}

std::vector<MethodResult> Benchmarker::compare(const std::vector<std::string>& prompts,
                                               const std::vector<std::string>& methods,
                                               const SweepConfig& sweep) {
  ELI_CHECK(tok_ != nullptr, "compare: text prompts need a tokenizer");
  std::vector<std::vector<int64_t>> ids;
  for (const auto& p : prompts) ids.push_back(tok_->encode(p));
  return compare_ids(ids, methods, sweep);
}

}  // namespace eli::benchmark
