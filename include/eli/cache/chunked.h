#pragma once
/// The chunked layout (method chunked_cache, spec layout `chunked`): old chunks pooled into
/// summaries. Requirements of a layout: eli/cache/layout.h.

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "eli/cache/layout.h"

namespace eli::cache {

/// The newest keep_last positions exact; every older complete chunk of chunk_size positions
/// (chunk c = positions [c*chunk, (c+1)*chunk)) replaced by one mean key and mean value.
/// Exact positions [S*chunk, n) live in a ring of keep_last + chunk slots; summaries in a
/// region of ceil(capacity / chunk) slots.
class ChunkedLayout {
 public:
  explicit ChunkedLayout(const LayoutArgs& a);
  std::string name() const;
  void write(const WriteArgs& w);
  Gathered gather(int layer, int64_t n) const;
  void for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn);
  Footprint footprint(int64_t n) const;
  int64_t window() const { return 0; }
  int64_t sinks() const { return 0; }
  /// Summaries (with the log-count bias) and the ring, its stale slots masked.
  static constexpr bool kPrefixHistory = false;
  std::vector<SlotRegion> decode_regions(int layer, int64_t n) const;
  /// A step that completes a chunk pools it (host-driven): that step runs eagerly.
  bool graph_step_ok(int64_t pos) const { return summaries(pos) == summaries(pos + 1); }
  std::vector<SlotRegion> graph_regions(int layer) const;
  std::vector<int64_t> graph_lens(int64_t n) const;
  int64_t graph_slot(int64_t pos) const { return pos % ring_; }
  void graph_prepare(const std::vector<int64_t>& n, const std::vector<int64_t>& pos);
  void write_seq(int64_t seq, const WriteArgs& w);
  Gathered gather_seq(int64_t seq, int layer, int64_t n) const;
  void reset() {}
  /// Summaries after n positions.
  int64_t summaries(int64_t n) const;

 private:
  void write_rows(int64_t b0, int64_t nb, const WriteArgs& w);
  Gathered gather_rows(int64_t b0, int64_t nb, int layer, int64_t n) const;
  LayoutArgs a_;
  int64_t chunk_, keep_, ring_, max_summaries_;
  SlotBuffers ring_buf_, sum_buf_;
  // CUDA only: ring_mask_ fp32 [ring + 1, 2 ring], row c is 0 where (i % ring) < c, else
  // kMaskedLogit (a view of row c from ring - a shows the c slots from a on, cyclically);
  // sum_bias_ fp32 [max_summaries] = log(chunk).
  at::Tensor ring_mask_, sum_bias_;
  at::Tensor graph_ring_bias_;  // graph step: fp32 [B, ring], the ring's mask for the step
};

}  // namespace eli::cache
