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

}  // namespace eli::cache
