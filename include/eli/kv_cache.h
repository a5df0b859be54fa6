#pragma once
/// The KV-cache interface (see ../docs/CACHES.md for every implementation).
///
/// One KVCache object holds every layer of one batch. Per layer and decode step the model
/// calls `append(layer, k, v)` with this step's keys/values and then `attend(layer, q)` with
/// the queries of the same new positions.
///
/// Contract of attend(): query i of the T_q new positions attends to
///   (a) every token the cache still holds from *earlier* appends, as stored (quantized,
///       pooled, windowed ...), and
///   (b) the new positions 0..i of the latest append (causal). Implementations may use the
///       latest append's keys/values at full precision for (b).
/// Layout-specific masks (sliding window, sinks) apply to (a) and (b) alike, so prefill with
/// T > window equals full attention under the sliding-window mask.

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eli/config.h"
#include "eli/model_config.h"

namespace eli {

struct CacheStats {
  int64_t tokens_seen = 0;     // positions appended per sequence since the last reset
  int64_t tokens_stored = 0;   // token slots held per sequence (incl. summaries, sinks)
  int64_t tokens_evicted = 0;  // positions dropped or pooled away per sequence
  int64_t payload_bytes = 0;   // K/V codes or values held for stored tokens (all layers, batch)
  int64_t scale_bytes = 0;     // scales and zero-points
  int64_t residual_bytes = 0;  // unquantized residual window (quantized codecs)
  int64_t metadata_bytes = 0;  // block tables, counters, per-slot counts
  int64_t reserved_bytes = 0;  // allocated but not holding a token (capacity, block padding)
  int64_t blocks_in_use = 0;   // paged only
  int64_t blocks_total = 0;    // paged only
  int64_t padding_bytes = 0;   // paged only: unused slots in partly filled blocks (in reserved)

  /// Bytes that hold the stored tokens: payload + scales + residual + metadata.
  int64_t total_bytes() const {
    return payload_bytes + scale_bytes + residual_bytes + metadata_bytes;
  }
  /// total_bytes() + reserved_bytes: what the cache actually has allocated.
  int64_t allocated_bytes() const { return total_bytes() + reserved_bytes; }
};

class KVCache {
 public:
  virtual ~KVCache() = default;
  /// k, v: [B, H, T_new, D] for `layer`, in the model's dtype and on the cache's device.
  virtual void append(int layer, const at::Tensor& k, const at::Tensor& v) = 0;
  /// Ragged batches: as append(), but row i brings new_tokens[i] positions (0 .. T_new), the
  /// first ones of the row; the rest of the row is right padding, neither stored nor seen by the
  /// sequence's queries (attend() gives zeros there). Row i is sequence seqs[i] (empty: row b
  /// is sequence b, all B rows present; else any distinct sequences, the others bring nothing).
  /// Sequences may hold different numbers of positions; each attends over its own. Empty
  /// new_tokens = every row T_new. The default accepts only uniform appends of every sequence
  /// and throws eli::Error otherwise.
  virtual void append_ragged(int layer, const at::Tensor& k, const at::Tensor& v,
                             const std::vector<int64_t>& new_tokens,
                             const std::vector<int64_t>& seqs);

  /// Sequence seq is done: it holds nothing from now on (the paged layout returns its blocks to
  /// the pool) until appends start it again from position 0; it sits out ragged steps with
  /// new_tokens 0 and graph steps with pos -1. Returns false (and changes nothing) for caches
  /// that cannot (the default).
  virtual bool release(int64_t seq) {
    (void)seq;
    return false;
  }

  /// Prefix reuse (the paged layout with CacheConfig::prefix_reuse): positions per shareable
  /// block, 0 when this cache shares no prefixes (the defaults below then do nothing).
  virtual int64_t prefix_block() const { return 0; }
  /// Sequence seq (holding whole blocks, nothing pending) takes the published blocks of the
  /// longest prefix of `tokens` it does not hold yet, leaving at least the last token to
  /// compute. Returns the positions gained (the caller then appends from there).
  virtual int64_t reuse_prefix(int64_t seq, const std::vector<int64_t>& tokens) {
    (void)seq;
    (void)tokens;
    return 0;
  }
  /// Publishes sequence seq's full blocks within `tokens` (the ids of its stored positions) for
  /// reuse_prefix of any sequence using the same pool.
  virtual void publish_prefix(int64_t seq, const std::vector<int64_t>& tokens) {
    (void)seq;
    (void)tokens;
  }
  /// The block pool (paged caches), to keep for later caches (CacheConfig::pool); else null.
  virtual std::shared_ptr<cache::BlockPool> block_pool() const { return nullptr; }
  /// q: [B, H, T_q, D] (T_q == T_new of the latest append). Returns [B, H, T_q, D].
  virtual at::Tensor attend(int layer, const at::Tensor& q) = 0;
  virtual CacheStats stats() const = 0;
  /// Forget every token; return all blocks/memory to the state right after construction.
  virtual void reset() = 0;
  /// Human-readable description, e.g. "paged(block=64)+int8/per_token_head".
  virtual std::string name() const = 0;

  /// CUDA-graph decode. begin_graph_step(pos) prepares the single-token step whose new token
  /// sits at position pos[b] of sequence b (pos[b] = its tokens stored; -1: a released sequence
  /// that sits the step out): it uploads what changes
  /// per step (lengths, write slots, masks, block tables) to device memory, asynchronously on
  /// the current stream, and until end_graph_step append/attend read those instead of host
  /// values, so a step captured at one position replays correctly at any other. Returns false,
  /// changing nothing, when the step cannot run that way (the caller runs it eagerly); the
  /// default never can. end_graph_step(pos) then sets the host state to "pos[b] + 1 stored",
  /// whether the step's kernels were replayed from a graph or ran.
  virtual bool begin_graph_step(const std::vector<int64_t>& pos) {
    (void)pos;
    return false;
  }
  virtual void end_graph_step(const std::vector<int64_t>& pos) { (void)pos; }
};

/// Creates the cache for a method name or spec (see docs/CACHES.md for the syntax), e.g.
/// "full_cache", "quant_int4", "paged_attention", "sliding_window+int4", "paged+int8".
/// `batch` is the number of sequences; `dtype`/`device` those of the model.
/// "no_cache" is not a cache: make_cache throws for it (the generator recomputes instead).
/// Unknown names -> eli::Error listing the valid ones. Layouts, codecs and method names of
/// one's own join through eli/cache/registry.h; the templates behind every cache are in
/// eli/cache/cache.h.
std::unique_ptr<KVCache> make_cache(const std::string& method, const ModelShape& shape,
                                    int64_t batch, const CacheConfig& cache_cfg,
                                    const QuantizationConfig& quant_cfg, at::ScalarType dtype,
                                    at::Device device);

/// What a method asks the generator for.
enum class MethodKind {
  kRecompute,  // "no_cache": no cache, the whole sequence recomputed every step
  kFullCache,  // every position at full precision ("full_cache", "full", "full(max=N)"): exact,
               // the reference the other methods are compared with
  kCache,      // any other cache (and names make_cache would reject)
};
/// The kind of a method name or spec (registered names included). Never throws.
MethodKind method_kind(const std::string& method);

/// The eight built-in method names, in the canonical order (registered ones:
/// eli::cache::registered_methods()).
const std::vector<std::string>& method_names();

}  // namespace eli
