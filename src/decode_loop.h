#pragma once
// The CUDA decode loop behind Generator::generate (decode_loop_cuda.cpp, built with CUDA
// LibTorch only): the single-token step captured once as a CUDA graph and replayed, sampling on
// the device, tokens copied out asynchronously.

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "eli/generator.h"

namespace eli::detail {

/// Where a decode loop's tokens go: per sequence into `tokens`, to the callback, and a sequence
/// is done after its first stop token (its later tokens are dropped). Both loops use it.
class TokenSink {
 public:
  TokenSink(std::vector<std::vector<int64_t>>& tokens, const std::vector<int64_t>& stop_tokens,
            const TokenCallback& on_token)
      : tokens_(tokens), stop_(stop_tokens), on_token_(on_token), done_(tokens.size(), false) {}
  /// ids: one token per sequence.
  void push(const int64_t* ids) {
    for (size_t b = 0; b < tokens_.size(); ++b) {
      if (done_[b]) continue;
      tokens_[b].push_back(ids[b]);
      if (on_token_) on_token_(static_cast<int64_t>(b), ids[b]);
      if (std::find(stop_.begin(), stop_.end(), ids[b]) != stop_.end()) {
        done_[b] = true;
        ++n_done_;
      }
    }
  }
  bool all_done() const { return n_done_ == tokens_.size(); }
  bool done(size_t b) const { return done_[b]; }

 private:
  std::vector<std::vector<int64_t>>& tokens_;
  const std::vector<int64_t>& stop_;
  const TokenCallback& on_token_;
  std::vector<bool> done_;
  size_t n_done_ = 0;
};

/// Test hook: graph replays of the CUDA decode loop so far (defined in every build).
std::atomic<int64_t>& graph_replays();

struct Prefill {
  at::Tensor logits;     // [B, vocab]: of each prompt's last token
  int64_t computed = 0;  // prompt positions run through the model
  int64_t reused = 0;    // prompt positions taken from published prefix blocks
};
/// The prefill of a batch of prompts (validated, any lengths) through `cache` (nullptr: no
/// cache). A cache that shares prefixes (KVCache::prefix_block() > 0) is filled in waves: each
/// sequence first takes the published blocks of its prompt's prefix; a sequence whose next
/// block an earlier sequence of the wave is about to compute waits for the next wave; a wave
/// computes its sequences from where their reuse ends (one ragged forward over their rows) and
/// publishes their full blocks.
Prefill prefill(const model::GPT2& model, KVCache* cache,
                const std::vector<std::vector<int64_t>>& prompts);

/// Prefill (prefill() above) + decode of `prompts` through `cache` on a CUDA model. Arguments
/// already validated by Generator::generate. Steps the cache cannot run from a graph
/// (KVCache::begin_graph_step false) run eagerly, with the same device sampler.
GenerationResult generate_cuda(const model::GPT2& model, KVCache& cache,
                               const std::vector<std::vector<int64_t>>& prompts,
                               const GenerationConfig& cfg, const TokenCallback& on_token);

}  // namespace eli::detail
