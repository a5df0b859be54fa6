#pragma once
/// Cache and quantization settings. Every field is validated by the matching
/// `validate()` (bad value -> eli::Error naming the field, the value and the allowed range).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace eli {
namespace cache {
class BlockPool;  // eli/cache/paged.h
}

/// How one of K or V is stored.
enum class QuantMode { kNone, kInt8, kInt4 };
/// Where quantization scales live.
///  kPerTensor:    one scale per (layer, K|V) for the whole cache (see docs/CACHES.md).
///  kPerTokenHead: one scale per (batch, head, token); history never re-quantized.
///  kGroup:        one scale (and optional zero-point) per `group_size` elements of head_dim.
enum class Granularity { kPerTensor, kPerTokenHead, kGroup };

const char* to_string(QuantMode m);
const char* to_string(Granularity g);
QuantMode parse_quant_mode(const std::string& s);     // "none"|"fp"|"int8"|"int4"
Granularity parse_granularity(const std::string& s);  // "per_tensor"|"per_token_head"|"group"

struct QuantizationConfig {
  QuantMode mode = QuantMode::kInt8;  // used for both K and V unless overridden
  Granularity granularity = Granularity::kPerTokenHead;
  int group_size = 32;      // kGroup only: 32 or 64 (must divide head_dim)
  bool zero_point = false;  // kGroup only: asymmetric (scale + zero-point) instead of symmetric
  float eps = 1e-8f;        // > 0: floor for scales so all-zero rows do not divide by zero
  int residual_tokens = 0;  // >= 0: newest tokens kept unquantized
  bool rotate = false;      // Hadamard rotation along head_dim before quantizing
  void validate() const;
};

struct CacheConfig {
  int window_size = 256;     // sliding_window: >= 1
  int sink_tokens = 0;       // sliding_window: >= 0 first tokens always kept
  int block_size = 64;       // paged: >= 1 tokens per block
  int pool_blocks = 0;       // paged: blocks in the pool, shared by the batch's sequences;
                             // 0 = enough for every sequence at max_tokens
  bool prefix_reuse = true;  // paged: share full blocks of equal prompt prefixes (prefill
                             // skips them); off for per_tensor codecs and residual=N
  /// paged: the pool to allocate from, kept by the caller so that later caches (later
  /// Generator::generate calls) find the prefix blocks earlier ones published; empty = a pool
  /// of the cache's own. eli::cache::make_block_pool (eli/cache/paged.h) makes one.
  std::shared_ptr<cache::BlockPool> pool;
  int chunk_size = 64;           // chunked_cache: >= 1 tokens per summary
  int keep_last = 256;           // chunked_cache: >= 0 newest tokens kept exact
  bool summary_log_bias = true;  // chunked_cache: add log(count) to a summary slot's logit
  int max_tokens = 0;            // capacity per sequence; 0 = model n_positions
  /// paged, pool_blocks 0 and no `pool`: the most tokens each of the batch's sequences will
  /// hold (one entry per sequence, each >= 0); the pool then holds just those, each rounded up
  /// to whole blocks (and capped at max_tokens), instead of every sequence at max_tokens. The
  /// Generator fills it from the prompts and max_new_tokens. Other layouts ignore it.
  std::vector<int64_t> seq_tokens;
  void validate() const;
};

}  // namespace eli
