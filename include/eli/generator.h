#pragma once
/// Prefill + decode loop over a KV cache (or recomputation for `no_cache`), greedy or sampled.

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eli/config.h"
#include "eli/kv_cache.h"
#include "eli/model.h"

namespace eli {

struct SamplingConfig {
  float temperature = 0.0f;  // 0 = greedy; > 0 samples
  int top_k = 0;             // 0 = off; else keep the k most likely
  float top_p = 1.0f;        // (0, 1]; 1 = off
  uint64_t seed = 42;
  void validate() const;
};

struct GenerationConfig {
  int max_new_tokens = 64;
  std::vector<int64_t> stop_tokens;  // generation of a sequence ends after emitting one
  SamplingConfig sampling;
  std::string method = "full_cache";  // any make_cache method/spec, or "no_cache"
  CacheConfig cache;
  QuantizationConfig quant;
  /// CUDA only: capture the decode step once as a CUDA graph and replay it (sampling on the
  /// device, tokens copied out asynchronously). false = the eager step (the reference the graph
  /// is tested against). Methods or steps a graph cannot express run eagerly either way.
  bool cuda_graph = true;
  void validate() const;
};

/// Called once per generated step: (sequence index in the batch, token id).
using TokenCallback = std::function<void(int64_t seq, int64_t token)>;

struct StepTiming {
  double prefill_ms = 0;          // time to first token
  std::vector<double> decode_ms;  // one entry per decode step after the first token
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> tokens;  // generated ids per sequence (stop token included)
  StepTiming timing;
  CacheStats cache_stats;      // at the end of generation (zeros for no_cache)
  int64_t prefill_tokens = 0;  // prompt positions the prefill ran through the model
  int64_t reused_tokens = 0;   // prompt positions taken from shared prefix blocks instead
  std::string cache_name;      // KVCache::name() of the cache used, "no_cache" for recomputation
};

class Generator {
 public:
  explicit Generator(const model::GPT2& model) : model_(&model) {}
  /// prompts: a batch of token-id sequences of any non-zero lengths (a ragged batch: each
  /// sequence keeps its own positions, and its output equals its output alone).
  /// Throws eli::Error for an empty batch or prompt, ids out of range, or
  /// longest prompt + max_new_tokens > n_positions (names the numbers).
  GenerationResult generate(const std::vector<std::vector<int64_t>>& prompts,
                            const GenerationConfig& cfg,
                            const TokenCallback& on_token = nullptr) const;

  /// The cache that `generate` would build for `cfg` (nullptr for no_cache).
  std::unique_ptr<KVCache> make_cache_for(const GenerationConfig& cfg, int64_t batch) const;

 private:
  const model::GPT2* model_;
};

/// Picks the next token per row of logits [B, V] (float). `gen` is a CPU generator.
at::Tensor sample_next(const at::Tensor& logits, const SamplingConfig& cfg, at::Generator& gen);

/// The sampler of the CUDA decode loop, on the logits' device without reading anything back
/// (so a CUDA graph can capture it): greedy = argmax; otherwise the same temperature / top-k /
/// top-p filter as sample_next, then the Gumbel-max trick with noise from a counter-based hash
/// of (cfg.seed, step, row, token id). step: int64 [1] on the logits' device, the decode step
/// (each step draws fresh noise). Returns int64 [B] on the logits' device. Deterministic for a
/// seed; its random stream differs from sample_next's (the CPU generator's).
at::Tensor sample_next_device(const at::Tensor& logits, const SamplingConfig& cfg,
                              const at::Tensor& step);

}  // namespace eli
