#pragma once
/// The contiguous layout (method full_cache, spec layout `full`). Requirements of a layout:
/// eli/cache/layout.h.

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "eli/cache/layout.h"

namespace eli::cache {

/// All positions kept, one slot per position, allocated for the capacity up front.
class ContiguousLayout {
 public:
  explicit ContiguousLayout(const LayoutArgs& a);
  std::string name() const { return "full"; }
  void write(const WriteArgs& w);
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
  void graph_prepare(const std::vector<int64_t>& n, const std::vector<int64_t>& pos);
  void write_seq(int64_t seq, const WriteArgs& w);
  Gathered gather_seq(int64_t seq, int layer, int64_t n) const;
  void reset() {}

 private:
  LayoutArgs a_;
  SlotBuffers buf_;
};

}  // namespace eli::cache
