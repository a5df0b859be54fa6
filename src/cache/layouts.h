#pragma once
// Layouts: where a cache keeps token slots and which ones it keeps. A layout stores the parts a
// codec produced (codecs.h) per layer, for K and V, and gathers the stored history back in
// attention order. Layouts are the first template argument of Cache<Layout, KCodec, VCodec>.
//
// Every layout has the same surface:
//   write(layer, pos0, xk, xv, k_parts, v_parts, recoder)  stores positions [pos0, pos0 + T)
//   gather(layer, n) -> Gathered                            stored history after n positions
//   for_each_buffer(layer, is_v, fn)                        every storage buffer (per_tensor
//   rescale) footprint(n) -> Footprint                               slot counts after n positions
//   window(), sinks()                                       attention mask (0 window = none)
//   decode_regions(layer, n) -> [SlotRegion]                history a decode query at position
//                                                           n sees, as storage read in place
//   kPrefixHistory                                          decode_regions(layer, m), m <= n,
//                                                           gives exactly positions [0, m)
//   reset(), name()
// and the CUDA-graph step (Cache::begin_graph_step), where every per-step value comes from
// device memory so that one captured step replays at any position:
//   graph_step_ok(pos)            whether the single-token step at pos can be replayed
//   graph_regions(layer)          decode_regions with a fixed structure: len = the region's
//                                 capacity (grid bound), masks in device buffers of their own;
//                                 the last region is the storage new positions are written to
//   graph_lens(n)                 per graph region, the slots a query at n reads
//   graph_slot(pos)               where position pos is written in the last graph region
//   graph_prepare(n, pos)         uploads the layout's per-step device state (masks, tables)

#include <ATen/ATen.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "cache/attention.h"
#include "cache/codecs.h"
#include "eli/config.h"
#include "eli/model_config.h"

namespace eli::cache {

struct LayoutArgs {
  ModelShape shape;
  int64_t batch = 1;
  int64_t capacity = 0;  // positions per sequence
  CacheConfig cfg;
  std::vector<PartSpec> k_parts, v_parts;
  at::Device device = at::kCPU;
};

/// Stored history in attention order: parts [B, H, S, width] plus, per slot, its absolute
/// position (-1 for a summary) and an additive logit bias (log count of a summary, else 0).
struct Gathered {
  Parts k, v;
  std::vector<int64_t> pos;
  std::vector<float> bias;
  int64_t size() const { return static_cast<int64_t>(pos.size()); }
};

/// Storage buffers of one layer (K and V parts [N, H, S, w]) of which slots 0 .. len - 1 are
/// read by a decode query (the fused CUDA path, cache/attention.h). bias: optional fp32
/// [B, >= len] on the device (log count of summaries, kMaskedLogit for slots not visible).
struct SlotRegion {
  Parts k, v;
  at::Tensor block_table;  // paged: [B, max_blocks] int32; undefined = contiguous
  at::Tensor bias;
  int64_t len = 0;
};

/// Slot counts of a layout after n positions (totals over the batch unless noted).
struct Footprint {
  int64_t stored_per_seq = 0;   // slots holding a token or summary, per sequence
  int64_t evicted_per_seq = 0;  // positions dropped or pooled, per sequence
  int64_t slots_stored = 0;     // batch total
  int64_t slots_allocated = 0;  // batch total (incl. free blocks, empty ring slots)
  int64_t padding_slots = 0;    // paged: unused slots of partly filled blocks
  int64_t blocks_in_use = 0;
  int64_t blocks_total = 0;
  int64_t metadata_bytes = 0;  // block tables
};

/// The codec side a layout may call back into (chunk summaries are re-encoded means).
class Recoder {
 public:
  virtual ~Recoder() = default;
  virtual Parts encode_rows(int layer, bool is_v, const at::Tensor& x) = 0;
  virtual at::Tensor decode_rows(int layer, bool is_v, const Parts& p) = 0;
};

/// Per-layer storage buffers for K and V: buffer i of layer l is [n0, H, slots, width_i].
struct SlotBuffers {
  std::vector<Parts> k, v;
  void allocate(const LayoutArgs& a, int64_t n0, int64_t slots);
  Parts& side(int layer, bool is_v) { return is_v ? v[layer] : k[layer]; }
};

/// Copies `count` elements at `host` into the same-sized device (or CPU) tensor `dst` in place:
/// through pinned memory and asynchronously on the current stream for CUDA, so the copy is
/// ordered before the next kernel and never synchronizes (the pinned block is not reused before
/// the copy ran).
void upload(at::Tensor& dst, const void* host, int64_t count);

/// Writes src parts [B, H, T, w] (selected tokens `src_idx` of T) into buf slots `dst_idx`.
void write_slots(Parts& buf, const Parts& src, const std::vector<int64_t>& src_idx,
                 const std::vector<int64_t>& dst_idx);
/// Selects slots `idx` of buf [B, H, slots, w] -> [B, H, |idx|, w] (a view for a range).
Parts read_slots(const Parts& buf, const std::vector<int64_t>& idx);

/// All positions kept, one slot per position, allocated for the capacity up front.
class ContiguousLayout {
 public:
  explicit ContiguousLayout(const LayoutArgs& a);
  std::string name() const { return "full"; }
  void write(int layer, int64_t pos0, const at::Tensor& xk, const at::Tensor& xv, const Parts& k,
             const Parts& v, Recoder& rc);
  Gathered gather(int layer, int64_t n) const;
  void for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn);
  Footprint footprint(int64_t n) const;
  int64_t window() const { return 0; }
  int64_t sinks() const { return 0; }
  static constexpr bool kPrefixHistory = true;
  std::vector<SlotRegion> decode_regions(int layer, int64_t n) const;
  bool graph_step_ok(int64_t) const { return true; }
  std::vector<SlotRegion> graph_regions(int layer) const;
  std::vector<int64_t> graph_lens(int64_t n) const;
  int64_t graph_slot(int64_t pos) const;
  void graph_prepare(int64_t n, int64_t pos);
  void reset() {}

 private:
  LayoutArgs a_;
  SlotBuffers buf_;
};

/// The newest window_size positions plus the first sink_tokens; storage window + sinks slots.
/// Slots [0, sinks) hold positions 0..sinks-1; position p >= sinks lives in ring slot
/// sinks + (p - sinks) % window.
class SlidingWindowLayout {
 public:
  explicit SlidingWindowLayout(const LayoutArgs& a);
  std::string name() const;
  void write(int layer, int64_t pos0, const at::Tensor& xk, const at::Tensor& xv, const Parts& k,
             const Parts& v, Recoder& rc);
  Gathered gather(int layer, int64_t n) const;
  void for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn);
  Footprint footprint(int64_t n) const;
  int64_t window() const { return window_; }
  int64_t sinks() const { return sinks_; }
  /// All stored slots, the ring's oldest masked once it is full (the query at n no longer sees
  /// position n - window, which the commit of n then overwrites).
  static constexpr bool kPrefixHistory = false;
  std::vector<SlotRegion> decode_regions(int layer, int64_t n) const;
  bool graph_step_ok(int64_t) const { return true; }
  std::vector<SlotRegion> graph_regions(int layer) const;
  std::vector<int64_t> graph_lens(int64_t n) const;
  int64_t graph_slot(int64_t pos) const;
  void graph_prepare(int64_t n, int64_t pos);
  void reset() {}

 private:
  int64_t slot_of(int64_t p) const { return p < sinks_ ? p : sinks_ + (p - sinks_) % window_; }
  // Positions held after n: the sinks and the newest window (position p < sinks + window in
  // slot p).
  int64_t stored(int64_t n) const {
    return std::min(n, sinks_) + std::min(std::max<int64_t>(n - sinks_, 0), window_);
  }
  std::vector<int64_t> kept(int64_t n_begin, int64_t n_end, int64_t n) const;
  LayoutArgs a_;
  int64_t window_, sinks_;
  SlotBuffers buf_;
  at::Tensor mask_row_;    // CUDA: fp32 [2 S], kMaskedLogit at S only (a view masks one slot)
  at::Tensor graph_bias_;  // graph step: fp32 [S], the step's mask row
};

/// Fixed-size blocks from one pool allocated for batch * ceil(capacity / block_size) blocks;
/// a block holds block_size positions of one sequence for every layer. Per-sequence block
/// tables (int32 [B, max_blocks], -1 = none) map logical block i to a pool block.
class PagedLayout {
 public:
  explicit PagedLayout(const LayoutArgs& a);
  std::string name() const;
  void write(int layer, int64_t pos0, const at::Tensor& xk, const at::Tensor& xv, const Parts& k,
             const Parts& v, Recoder& rc);
  Gathered gather(int layer, int64_t n) const;
  void for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn);
  Footprint footprint(int64_t n) const;
  int64_t window() const { return 0; }
  int64_t sinks() const { return 0; }
  static constexpr bool kPrefixHistory = true;
  std::vector<SlotRegion> decode_regions(int layer, int64_t n) const;
  bool graph_step_ok(int64_t) const { return true; }
  std::vector<SlotRegion> graph_regions(int layer) const;
  std::vector<int64_t> graph_lens(int64_t n) const;
  int64_t graph_slot(int64_t pos) const;
  void graph_prepare(int64_t n, int64_t pos);
  void reset();
  /// int32 [B, max_blocks] on the cache's device (-1 = unallocated), updated in place.
  const at::Tensor& block_table() const { return table_dev_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t block_size() const { return bs_; }

 private:
  void ensure_blocks(int64_t n_end);
  LayoutArgs a_;
  int64_t bs_, max_blocks_, num_blocks_;
  SlotBuffers pool_;            // [num_blocks, H, block_size, w]
  std::vector<int32_t> table_;  // host copy, [B * max_blocks]
  std::vector<int32_t> free_;   // stack of free pool blocks
  at::Tensor table_dev_;
};

/// The newest keep_last positions exact; every older complete chunk of chunk_size positions
/// (chunk c = positions [c*chunk, (c+1)*chunk)) replaced by one mean key and mean value.
/// Exact positions [S*chunk, n) live in a ring of keep_last + chunk slots; summaries in a
/// region of ceil(capacity / chunk) slots.
class ChunkSummaryLayout {
 public:
  explicit ChunkSummaryLayout(const LayoutArgs& a);
  std::string name() const;
  void write(int layer, int64_t pos0, const at::Tensor& xk, const at::Tensor& xv, const Parts& k,
             const Parts& v, Recoder& rc);
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
  void graph_prepare(int64_t n, int64_t pos);
  void reset() {}
  /// Summaries after n positions.
  int64_t summaries(int64_t n) const;

 private:
  LayoutArgs a_;
  int64_t chunk_, keep_, ring_, max_summaries_;
  SlotBuffers ring_buf_, sum_buf_;
  // CUDA only: ring_mask_ fp32 [ring + 1, 2 ring], row c is 0 where (i % ring) < c, else
  // kMaskedLogit (a view of row c from ring - a shows the c slots from a on, cyclically);
  // sum_bias_ fp32 [max_summaries] = log(chunk).
  at::Tensor ring_mask_, sum_bias_;
  at::Tensor graph_ring_bias_;  // graph step: fp32 [ring], the ring's mask for the step
};

}  // namespace eli::cache
