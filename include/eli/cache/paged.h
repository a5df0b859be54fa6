#pragma once
/// The paged layout (method paged_attention, spec layout `paged`). Requirements of a layout:
/// eli/cache/layout.h.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eli/cache/layout.h"

namespace eli::cache {

/// Fixed-size blocks from one pool shared by the batch's sequences, handed out as sequences
/// grow (a block holds block_size positions of one sequence, every layer) and returned on
/// reset() or release(seq). The pool holds CacheConfig.pool_blocks blocks (0 = batch *
/// ceil(capacity / block_size), enough for every sequence at capacity); a write that needs more
/// blocks than are free is an eli::Error that changes nothing. Per-sequence block tables (int32
/// [B, max_blocks], -1 = none) map logical block i to a pool block.
class PagedLayout {
 public:
  explicit PagedLayout(const LayoutArgs& a);
  std::string name() const;
  void write(int layer, int64_t pos0, const at::Tensor& xk, const at::Tensor& xv, const Parts& k,
             const Parts& v, Recoder& rc);
  void write_seq(int64_t seq, int layer, int64_t pos0, const at::Tensor& xk, const at::Tensor& xv,
                 const Parts& k, const Parts& v, Recoder& rc);
  Gathered gather(int layer, int64_t n) const;
  Gathered gather_seq(int64_t seq, int layer, int64_t n) const;
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
  void graph_prepare(const std::vector<int64_t>& n, const std::vector<int64_t>& pos);
  void reset();
  /// Returns sequence seq's blocks to the pool; it then holds no positions.
  void release(int64_t seq);
  /// int32 [B, max_blocks] on the cache's device (-1 = unallocated), updated in place.
  const at::Tensor& block_table() const { return table_dev_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t pool_blocks() const { return num_blocks_; }
  int64_t block_size() const { return bs_; }

 private:
  /// Gives sequence b the blocks for positions [0, n_end[b]) (all or, when the pool has too few
  /// free blocks, none: eli::Error).
  void ensure_blocks(const std::vector<int64_t>& n_end);
  void ensure_seq_blocks(int64_t seq, int64_t n_end);
  Parts through_table(const Parts& pool, const at::Tensor& table_rows, int64_t n) const;
  LayoutArgs a_;
  int64_t bs_, max_blocks_, num_blocks_;
  SlotBuffers pool_;            // [num_blocks, H, block_size, w]
  std::vector<int32_t> table_;  // host copy, [B * max_blocks]
  std::vector<int32_t> free_;   // stack of free pool blocks
  at::Tensor table_dev_;
};

}  // namespace eli::cache
