#include "eli/cache/contiguous.h"

namespace eli::cache {

ContiguousLayout::ContiguousLayout(const LayoutArgs& a) : a_(a) {
  buf_.allocate(a_, a_.batch, a_.capacity);
}

namespace {

void write_rows(Parts k_buf, Parts v_buf, int64_t pos0, const Parts& k, const Parts& v) {
  const int64_t t = k[0].size(2);
  write_slots(k_buf, k, iota(0, t), iota(pos0, pos0 + t));
  write_slots(v_buf, v, iota(0, t), iota(pos0, pos0 + t));
}

Gathered gather_rows(const Parts& k_buf, const Parts& v_buf, int64_t n) {
  Gathered g;
  g.pos = iota(0, n);
  g.bias.assign(static_cast<size_t>(n), 0.0f);
  g.k = read_slots(k_buf, g.pos);
  g.v = read_slots(v_buf, g.pos);
  return g;
}

}  // namespace

void ContiguousLayout::write(const WriteArgs& w) {
  write_rows(buf_.k[w.layer], buf_.v[w.layer], w.pos0, w.k, w.v);
}

void ContiguousLayout::write_seq(int64_t seq, const WriteArgs& w) {
  write_rows(seq_rows(buf_.k[w.layer], seq), seq_rows(buf_.v[w.layer], seq), w.pos0, w.k, w.v);
}

Gathered ContiguousLayout::gather(int layer, int64_t n) const {
  return gather_rows(buf_.k[layer], buf_.v[layer], n);
}

Gathered ContiguousLayout::gather_seq(int64_t seq, int layer, int64_t n) const {
  return gather_rows(seq_rows(buf_.k[layer], seq), seq_rows(buf_.v[layer], seq), n);
}

std::vector<SlotRegion> ContiguousLayout::decode_regions(int layer, int64_t n) const {
  return {SlotRegion{buf_.k[layer], buf_.v[layer], {}, {}, n}};
}

std::vector<SlotRegion> ContiguousLayout::graph_regions(int layer) const {
  return {SlotRegion{buf_.k[layer], buf_.v[layer], {}, {}, a_.capacity}};
}
std::vector<int64_t> ContiguousLayout::graph_lens(int64_t n) const { return {n}; }
int64_t ContiguousLayout::graph_slot(int64_t pos) const { return pos; }
void ContiguousLayout::graph_prepare(const std::vector<int64_t>&, const std::vector<int64_t>&) {}

void ContiguousLayout::for_each_buffer(int layer, bool is_v,
                                       const std::function<void(Parts&)>& fn) {
  fn(buf_.side(layer, is_v));
}

Footprint ContiguousLayout::footprint(int64_t n) const {
  Footprint f;
  f.stored_per_seq = n;
  f.slots_stored = a_.batch * n;
  f.slots_allocated = a_.batch * a_.capacity;
  return f;
}

}  // namespace eli::cache
