#pragma once
/// Quality of a KV-cache method measured through the cache itself.
///
/// A single forward pass over a text never reads a cache, so it says nothing about a
/// compressed one. stream_logits() instead prefills a prefix and then feeds the rest of the
/// text one token per step through the method's cache (teacher forcing): from the second
/// scored token on, every prediction attends to what the cache kept (quantized, windowed,
/// pooled ...). Comparing these logits with the full cache's on the same token stream gives
/// perplexity, KL divergence and top-1 agreement (see metrics.h).

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "eli/generator.h"
#include "eli/model.h"

namespace eli::benchmark {

/// ids: a token stream of N tokens (ids < vocab, N <= n_positions); prefix in [1, N).
/// Row i of the result is the model's next-token logits for predicting ids[prefix + i]:
///   row 0 from the prefill of ids[0, prefix); row i > 0 from one decode step that feeds
///   ids[prefix + i - 1] at position prefix + i - 1 through the cache.
/// `cfg.method`, `cfg.cache`, `cfg.quant` select the cache (batch 1). For "no_cache" the rows
/// come from one causal forward over the stream, which is what recomputation yields.
/// Returns [N - prefix, vocab] fp32 on the CPU.
at::Tensor stream_logits(const model::GPT2& model, const std::vector<int64_t>& ids, int64_t prefix,
                         const GenerationConfig& cfg);

/// The tokens that the rows of stream_logits(ids, prefix) predict: ids[prefix, N).
std::vector<int64_t> stream_targets(const std::vector<int64_t>& ids, int64_t prefix);

}  // namespace eli::benchmark
