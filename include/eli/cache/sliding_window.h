#pragma once
/// The sliding-window layout (method sliding_window, spec layout `sliding`). Requirements of
/// a layout: eli/cache/layout.h.

#include <ATen/ATen.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "eli/cache/layout.h"

namespace eli::cache {

/// The newest window_size positions plus the first sink_tokens; storage window + sinks slots.
/// Slots [0, sinks) hold positions 0..sinks-1; position p >= sinks lives in ring slot
/// sinks + (p - sinks) % window.
class SlidingWindowLayout {
 public:
  explicit SlidingWindowLayout(const LayoutArgs& a);
  std::string name() const;
  void write(const WriteArgs& w);
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
  void graph_prepare(const std::vector<int64_t>& n, const std::vector<int64_t>& pos);
  void write_seq(int64_t seq, const WriteArgs& w);
  Gathered gather_seq(int64_t seq, int layer, int64_t n) const;
  void reset() {}

 private:
  int64_t slot_of(int64_t p) const { return p < sinks_ ? p : sinks_ + (p - sinks_) % window_; }
  // Positions held after n: the sinks and the newest window (position p < sinks + window in
  // slot p).
  int64_t stored(int64_t n) const {
    return std::min(n, sinks_) + std::min(std::max<int64_t>(n - sinks_, 0), window_);
  }
  std::vector<int64_t> kept(int64_t n_begin, int64_t n_end, int64_t n) const;
  void write_rows(Parts k_buf, Parts v_buf, int64_t pos0, const Parts& k, const Parts& v) const;
  Gathered gather_rows(const Parts& k_buf, const Parts& v_buf, int64_t n) const;
  LayoutArgs a_;
  int64_t window_, sinks_;
  SlotBuffers buf_;
  at::Tensor mask_row_;    // CUDA: fp32 [2 S], kMaskedLogit at S only (a view masks one slot)
  at::Tensor graph_bias_;  // graph step: fp32 [B, S], the step's mask rows
};

}  // namespace eli::cache
