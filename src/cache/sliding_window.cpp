#include "eli/cache/sliding_window.h"

#include <fmt/format.h>

#include <algorithm>

namespace eli::cache {

SlidingWindowLayout::SlidingWindowLayout(const LayoutArgs& a)
    : a_(a),
      window_(std::min<int64_t>(a.cfg.window_size, a.capacity)),
      sinks_(std::min<int64_t>(a.cfg.sink_tokens, a.capacity)) {
  const int64_t slots = std::min(sinks_ + window_, a_.capacity);
  buf_.allocate(a_, a_.batch, slots);
  if (fused_decode_tables(a_.device)) {
    mask_row_ = at::zeros({2 * slots}, at::TensorOptions().dtype(at::kFloat));
    mask_row_.select(0, slots).fill_(kMaskedLogit);
    mask_row_ = mask_row_.to(a_.device);
    graph_bias_ =
        at::zeros({a_.batch, slots}, at::TensorOptions().dtype(at::kFloat).device(a_.device));
  }
}

std::string SlidingWindowLayout::name() const {
  return sinks_ > 0 ? fmt::format("sliding(window={},sinks={})", window_, sinks_)
                    : fmt::format("sliding(window={})", window_);
}

// Positions in [n_begin, n_end) still held once n positions are stored.
std::vector<int64_t> SlidingWindowLayout::kept(int64_t n_begin, int64_t n_end, int64_t n) const {
  std::vector<int64_t> p;
  for (int64_t i = n_begin; i < n_end; ++i) {
    if (i < sinks_ || i >= std::max(sinks_, n - window_)) p.push_back(i);
  }
  return p;
}

void SlidingWindowLayout::write_rows(Parts k_buf, Parts v_buf, int64_t pos0, const Parts& k,
                                     const Parts& v) const {
  const int64_t t = k[0].size(2);
  // Only positions that survive this write, so no ring slot is written twice.
  std::vector<int64_t> src, dst;
  for (int64_t p : kept(pos0, pos0 + t, pos0 + t)) {
    src.push_back(p - pos0);
    dst.push_back(slot_of(p));
  }
  write_slots(k_buf, k, src, dst);
  write_slots(v_buf, v, src, dst);
}

Gathered SlidingWindowLayout::gather_rows(const Parts& k_buf, const Parts& v_buf, int64_t n) const {
  Gathered g;
  g.pos = kept(0, n, n);
  g.bias.assign(g.pos.size(), 0.0f);
  std::vector<int64_t> slots;
  for (int64_t p : g.pos) slots.push_back(slot_of(p));
  g.k = read_slots(k_buf, slots);
  g.v = read_slots(v_buf, slots);
  return g;
}

void SlidingWindowLayout::write(const WriteArgs& w) {
  write_rows(buf_.k[w.layer], buf_.v[w.layer], w.pos0, w.k, w.v);
}

void SlidingWindowLayout::write_seq(int64_t seq, const WriteArgs& w) {
  write_rows(seq_rows(buf_.k[w.layer], seq), seq_rows(buf_.v[w.layer], seq), w.pos0, w.k, w.v);
}

Gathered SlidingWindowLayout::gather(int layer, int64_t n) const {
  return gather_rows(buf_.k[layer], buf_.v[layer], n);
}

Gathered SlidingWindowLayout::gather_seq(int64_t seq, int layer, int64_t n) const {
  return gather_rows(seq_rows(buf_.k[layer], seq), seq_rows(buf_.v[layer], seq), n);
}

std::vector<SlotRegion> SlidingWindowLayout::decode_regions(int layer, int64_t n) const {
  // Stored positions fill slots [0, stored) (a position p < sinks + window sits in slot p).
  SlotRegion r{buf_.k[layer], buf_.v[layer], {}, {}, stored(n)};
  if (n - window_ >= sinks_) {  // position n - window is stored but outside the query's window
    const int64_t slots = buf_.k[layer][0].size(2), j = slot_of(n - window_);
    r.bias = mask_row_.narrow(0, slots - j, slots).unsqueeze(0).expand({a_.batch, slots});
  }
  return {r};
}

std::vector<SlotRegion> SlidingWindowLayout::graph_regions(int layer) const {
  const int64_t slots = buf_.k[layer][0].size(2);
  return {SlotRegion{buf_.k[layer], buf_.v[layer], {}, graph_bias_, slots}};
}

std::vector<int64_t> SlidingWindowLayout::graph_lens(int64_t n) const { return {stored(n)}; }

int64_t SlidingWindowLayout::graph_slot(int64_t pos) const { return slot_of(pos); }

void SlidingWindowLayout::graph_prepare(const std::vector<int64_t>& n,
                                        const std::vector<int64_t>&) {
  // decode_regions' mask per sequence: the slot of position n - window once it is stored but
  // out of view (0 elsewhere adds exactly nothing, so the step equals the eager one without a
  // bias).
  const int64_t slots = graph_bias_.size(1);
  std::vector<float> rows(static_cast<size_t>(graph_bias_.numel()), 0.0f);
  for (size_t b = 0; b < n.size(); ++b) {
    if (n[b] - window_ >= sinks_) {
      rows[b * static_cast<size_t>(slots) + static_cast<size_t>(slot_of(n[b] - window_))] =
          kMaskedLogit;
    }
  }
  upload(graph_bias_, rows.data(), graph_bias_.numel());
}

void SlidingWindowLayout::for_each_buffer(int layer, bool is_v,
                                          const std::function<void(Parts&)>& fn) {
  fn(buf_.side(layer, is_v));
}

Footprint SlidingWindowLayout::footprint(int64_t n) const {
  Footprint f;
  f.stored_per_seq = stored(n);
  f.evicted_per_seq = n - f.stored_per_seq;
  f.slots_stored = a_.batch * f.stored_per_seq;
  f.slots_allocated = a_.batch * buf_.k[0][0].size(2);
  return f;
}

}  // namespace eli::cache
