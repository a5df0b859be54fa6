#pragma once
/// The Benchmarker: drives Generator over KV-cache methods and measures speed, memory and
/// quality (the C++ counterpart of the original Python KVCacheBenchmarker). See
/// docs/BENCHMARKER.md for what every number means and how it is measured.

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "eli/generator.h"
#include "eli/kv_cache.h"
#include "eli/model.h"
#include "eli/tokenizer.h"

namespace eli::benchmark {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct BenchmarkConfig {
  /// Cache, quantization and sampling settings shared by every method; `method` and
  /// `max_new_tokens` are set per call. Greedy by default, and runs ignore stop tokens so every
  /// method generates the same number of tokens.
  GenerationConfig generation;
  int warmup = 1;         // >= 0 untimed generate() calls per measured point
  int warmup_tokens = 4;  // >= 0 tokens per warm-up call (0 = as many as measured)
  int repetitions = 5;    // >= 1 timed generate() calls per measured point (spread needs >= 2)
  bool quality = true;    // measure Quality (text similarity always; stream metrics need eval_ids)
  std::vector<int64_t> eval_ids;  // held-out token stream for perplexity / KL / top-1
  int eval_prefix = 32;           // >= 1 tokens prefilled before scoring starts
  int eval_tokens = 256;          // >= 1 tokens scored one by one through the cache
  void validate() const;
};

/// Quality of one method, against the full cache. NaN / -1 where not measured.
struct Quality {
  int64_t eval_prefix = 0;        // tokens prefilled before scoring (the context of the metrics
                                  // grows from eval_prefix to eval_prefix + eval_tokens)
  int64_t eval_tokens = 0;        // tokens scored by the stream metrics (0 = not measured)
  double perplexity = kNaN;       // through this method's cache on eval_ids
  double full_perplexity = kNaN;  // through the full cache on the same stream
  double ppl_delta_pct = kNaN;    // 100 * (perplexity / full_perplexity - 1)
  double kl_vs_full = kNaN;       // mean KL(full || method) of next-token distributions, nats
  double top1_agreement = kNaN;   // fraction of scored positions with the same argmax
  int64_t first_divergence = -1;  // first index where greedy output differs from the full
                                  // cache's (earliest over the batch); -1 = never
  double rouge_l = kNaN;          // token-level ROUGE-L F1 of greedy ids vs full cache, batch mean
  double edit_similarity = kNaN;  // token-level 1 - Levenshtein / max length, batch mean
};

/// One (method, batch, prompts) point. The prompts run as given: a batch of different lengths
/// (ragged) keeps every length.
struct MethodResult {
  std::string method;      // as requested ("quant_int4", "sliding_window+int4", ...)
  std::string cache_name;  // KVCache::name(), "no_cache" for recomputation
  int64_t batch = 0;
  std::vector<int64_t> prompt_lens;  // tokens of each sequence's prompt, in batch order
  int64_t prompt_len = 0;            // the longest prompt (every prompt's in a rectangular batch)
  int64_t prompt_tokens = 0;         // sum of prompt_lens: the tokens prefill processes
  int64_t new_tokens = 0;            // generated per sequence
  int warmup = 0, repetitions = 0;
  // Time (milliseconds; medians over the repetitions unless said otherwise). Prefill (the
  // prompt, up to the first token) and decode (every later token) are reported apart.
  std::vector<double> total_ms_reps;     // wall time of each timed generate() call
  std::vector<double> ttft_ms_reps;      // prefill time of each timed call
  double total_ms = kNaN;                // prefill + all decode steps
  double ttft_ms = kNaN;                 // time to first token (the prefill step)
  double prefill_tokens_per_sec = kNaN;  // prompt_tokens / ttft_ms
  double decode_mean_ms = kNaN;          // per-step decode latency over all repetitions' steps
  double decode_p50_ms = kNaN;
  double decode_p90_ms = kNaN;
  double decode_p99_ms = kNaN;
  double tokens_per_sec = kNaN;  // tokens generated (all sequences) / total_ms (end to end)
  // Decode throughput: batch * steps / decode time of one repetition, for each repetition;
  // the headline is their median, the spread their sample stddev and range.
  std::vector<double> decode_tokens_per_sec_reps;
  double decode_tokens_per_sec = kNaN;         // median over the repetitions
  double decode_tokens_per_sec_stddev = kNaN;  // 0 with one repetition
  double decode_tokens_per_sec_min = kNaN;
  double decode_tokens_per_sec_max = kNaN;
  double decode_tokens_per_sec_cv = kNaN;  // stddev / mean: > kNoisyCv flags a noisy point
  // Memory (MB = 2^20 bytes). In a ragged batch the cache's per-sequence counts (tokens_seen,
  // tokens_stored, tokens_evicted) are the longest sequence's, its bytes those of every
  // sequence; bytes_per_token divides by the positions each sequence saw (its prompt +
  // new_tokens - 1), summed, and bytes_per_stored_token is NaN (no per-sequence stored count).
  double cpu_peak_mb = kNaN;             // peak process RSS during the timed runs
  double cpu_start_mb = kNaN;            // RSS when they began
  std::string cpu_peak_source;           // "vmhwm" | "vmrss_sampled" | "unavailable"
  double gpu_peak_mb = kNaN;             // CUDA caching allocator peak (NaN on CPU / CPU builds)
  CacheStats cache;                      // at the end of generation (exact bytes)
  double cache_mb = kNaN;                // cache.total_bytes() in MB
  double cache_allocated_mb = kNaN;      // cache.allocated_bytes() in MB
  double bytes_per_token = kNaN;         // total_bytes / positions seen, incl. metadata
  double bytes_per_stored_token = kNaN;  // total_bytes / (batch * tokens_stored)
  // Against full_cache at the same batch and prompt lengths in the same run; NaN without one.
  double memory_vs_full = kNaN;  // cache total_bytes / full_cache's
  double speed_vs_full = kNaN;   // decode_tokens_per_sec / full_cache's
  Quality quality;
  std::string sample_text;                       // decoded output of sequence 0 (needs a tokenizer)
  std::vector<std::vector<int64_t>> output_ids;  // greedy output of the last repetition
  std::string error;  // non-empty when the method failed; the numbers are then NaN
};

/// The prompt length of a result as the reports print it: "23" when every prompt has 23
/// tokens, "5..400" (shortest..longest) for a ragged batch.
std::string prompt_lens_label(const MethodResult& r);

/// Coefficient of variation of decode tok/s above which a point is flagged as noisy.
constexpr double kNoisyCv = 0.05;

/// Fills memory_vs_full and speed_vs_full of every result from the full_cache result at the
/// same batch, prompt_len and prompt_lens; left NaN where there is none (or it failed).
void relative_to_full(std::vector<MethodResult>& results);

struct QuantizedGeneration {
  std::string method;  // quant_int8 | quant_int4 | quant_mixed
  std::string text;    // decoded continuation ("" without a tokenizer)
  std::vector<int64_t> tokens;
  int64_t n_tokens = 0;
  double cache_mb = 0;  // exact, from CacheStats::total_bytes
  CacheStats cache;
};

/// Sweep over batch size and prompt length. Both lists empty: one point, the prompts exactly
/// as given (a ragged set stays ragged).
struct SweepConfig {
  /// Non-empty: the workload is reshaped on request. The prompts' tokens are joined into one
  /// stream and every point's rows are cut from it with exactly this many tokens
  /// (make_prompt_batch), so prompts are cut or run together.
  std::vector<int64_t> prompt_lens;
  /// Non-empty: one point per batch size. Without prompt_lens, row i is prompt i mod n of the n
  /// prompts as given (a batch larger than the set repeats prompts, a smaller one takes the
  /// first ones); with prompt_lens, rows are cut as said above. Empty: the number of prompts.
  std::vector<int64_t> batch_sizes;
  int max_new_tokens = 32;
};

/// Progress reports: (points done, points total, what runs now).
using ProgressFn = std::function<void(int64_t done, int64_t total, const std::string& what)>;

/// `batch` prompts of exactly `len` tokens, row b cut from `stream` starting at b * len
/// (wrapping around, so a short stream still fills any shape). Empty stream -> eli::Error.
std::vector<std::vector<int64_t>> make_prompt_batch(const std::vector<int64_t>& stream,
                                                    int64_t batch, int64_t len);

class Benchmarker {
 public:
  /// `tokenizer` may be null (token-id prompts only, no decoded text). Both must outlive this.
  Benchmarker(const model::GPT2& model, BenchmarkConfig cfg, const Tokenizer* tokenizer = nullptr);

  void set_progress(ProgressFn fn) { progress_ = std::move(fn); }
  const BenchmarkConfig& config() const { return cfg_; }

  /// One sequence per text prompt, tokenized and run as given (prompts of different lengths
  /// form a ragged batch; nothing is cut). Needs a tokenizer.
  MethodResult benchmark_method(const std::vector<std::string>& prompts, const std::string& method,
                                int max_new_tokens);
  /// prompts: a batch of non-empty id sequences of any lengths, run as given.
  MethodResult benchmark_ids(const std::vector<std::vector<int64_t>>& prompts,
                             const std::string& method, int max_new_tokens);

  /// Greedy generation through a quantized cache; mode: "int8" | "int4" | "mixed".
  QuantizedGeneration generate_with_quantized_kv(const std::string& prompt, int max_new_tokens,
                                                 const std::string& mode);
  QuantizedGeneration generate_with_quantized_kv(const std::vector<int64_t>& prompt_ids,
                                                 int max_new_tokens, const std::string& mode);

  /// Every method at every sweep point (batch-major, then prompt length, then method); see
  /// SweepConfig for how a sweep shapes the prompts. A method that fails (e.g. unknown name)
  /// yields a result with `error` set; the others still run.
  std::vector<MethodResult> compare(const std::vector<std::string>& prompts,
                                    const std::vector<std::string>& methods,
                                    const SweepConfig& sweep);
  std::vector<MethodResult> compare_ids(const std::vector<std::vector<int64_t>>& prompts,
                                        const std::vector<std::string>& methods,
                                        const SweepConfig& sweep);

  /// Perplexity, KL and top-1 of `method` on cfg.eval_ids (cached per method; needs
  /// cfg.quality and eval_ids, else an all-NaN Quality).
  Quality stream_quality(const std::string& method);

 private:
  MethodResult run_point(const std::vector<std::vector<int64_t>>& prompts,
                         const std::string& method, int max_new_tokens);
  const std::vector<std::vector<int64_t>>& reference_output(
      const std::vector<std::vector<int64_t>>& prompts, int max_new_tokens);
  GenerationConfig config_for(const std::string& method, int max_new_tokens) const;
  std::vector<int64_t> eval_stream() const;

  const model::GPT2* model_;
  const Tokenizer* tok_;
  BenchmarkConfig cfg_;
  ProgressFn progress_;
  at::Tensor full_stream_logits_;
  std::map<std::string, Quality> stream_quality_;
  std::map<std::string, std::vector<std::vector<int64_t>>> reference_outputs_;
};

}  // namespace eli::benchmark
