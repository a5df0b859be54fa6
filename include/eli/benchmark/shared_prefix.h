#pragma once
/// The shared-prefix workload: N requests that share a system prompt of S tokens, each with
/// Q tokens of its own (a question), run through full_cache and through a paged cache with
/// prefix reuse, whose pool is kept across batches (the system prompt published by an earlier
/// batch, as a server would have it). Every measured batch has questions no earlier batch had.
/// Reports, per method, the prompt positions the prefill computed and reused, the KV bytes
/// allocated (full: its capacity; paged: the kept pool, sized to what a batch needs: the
/// prefix's blocks once and each request's own), the time to first token and the decode
/// throughput. docs/CACHES.md shows it.

#include <cstdint>
#include <string>
#include <vector>

#include "eli/generator.h"
#include "eli/model.h"

namespace eli::benchmark {

struct SharedPrefixConfig {
  int64_t requests = 32;                         // >= 1 sequences per batch
  int64_t prefix_tokens = 512;                   // >= 1 shared tokens
  int64_t own_tokens = 32;                       // >= 1 tokens of each request's own
  int max_new_tokens = 16;                       // >= 1
  std::string paged_method = "paged(block=16)";  // any paged spec (its codec too)
  int repetitions = 3;                           // >= 1 measured batches (medians reported)
  uint64_t seed = 1;            // the token ids (random ids of the model's vocabulary)
  GenerationConfig generation;  // cache / quantization / cuda_graph settings shared by both
  void validate() const;
};

struct SharedPrefixRow {
  std::string method;      // "full_cache" or the paged spec
  std::string cache_name;  // KVCache::name()
  bool prefix_reuse = false;
  int64_t prompt_tokens = 0;       // requests x (prefix + own)
  int64_t prefill_tokens = 0;      // prompt positions computed (last measured batch)
  int64_t reused_tokens = 0;       // prompt positions taken from shared blocks
  int64_t kv_bytes_held = 0;       // what the cache holds at the end of a batch
  double ttft_ms = 0;              // median time to first token over the measured batches
  double decode_tokens_per_s = 0;  // median, over the batch's sequences
};

/// Runs the workload on `model` (full_cache, then the paged spec with reuse). Throws
/// eli::Error for a bad config or a prompt past the model's positions.
std::vector<SharedPrefixRow> run_shared_prefix(const model::GPT2& model,
                                               const SharedPrefixConfig& cfg);
/// A text table of the rows with the paged row's ratios to full_cache.
std::string format_shared_prefix(const std::vector<SharedPrefixRow>& rows,
                                 const SharedPrefixConfig& cfg);

}  // namespace eli::benchmark
