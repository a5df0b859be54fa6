#include "cache/layouts.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "eli/error.h"

namespace eli::cache {
namespace {

// [first, first + len) when idx is a run of consecutive values, else len = -1.
std::pair<int64_t, int64_t> as_range(const std::vector<int64_t>& idx) {
  for (size_t i = 1; i < idx.size(); ++i) {
    if (idx[i] != idx[0] + static_cast<int64_t>(i)) return {0, -1};
  }
  return {idx.empty() ? 0 : idx[0], static_cast<int64_t>(idx.size())};
}

at::Tensor index_tensor(const std::vector<int64_t>& idx, at::Device device) {
  return at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(device);
}

at::Tensor select_slots(const at::Tensor& t, const std::vector<int64_t>& idx) {
  auto r = as_range(idx);
  if (r.second >= 0) return t.narrow(2, r.first, r.second);
  return t.index_select(2, index_tensor(idx, t.device()));
}

std::vector<int64_t> iota(int64_t begin, int64_t end) {
  std::vector<int64_t> v;
  for (int64_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

}  // namespace

void upload(at::Tensor& dst, const void* host, int64_t count) {
  ELI_CHECK(dst.numel() == count && dst.is_contiguous(), "upload: {} elements into a tensor of {}",
            count, dst.numel());
  const auto bytes = static_cast<size_t>(count) * at::elementSize(dst.scalar_type());
  if (!dst.is_cuda()) {
    std::memcpy(dst.data_ptr(), host, bytes);
    return;
  }
  at::Tensor staged = at::empty(dst.sizes(), dst.options().device(at::kCPU).pinned_memory(true));
  std::memcpy(staged.data_ptr(), host, bytes);
  dst.copy_(staged, /*non_blocking=*/true);
}

void SlotBuffers::allocate(const LayoutArgs& a, int64_t n0, int64_t slots) {
  auto make = [&](const std::vector<PartSpec>& specs) {
    Parts p;
    for (const auto& s : specs) {
      p.push_back(at::zeros({n0, a.shape.n_head, slots, s.width},
                            at::TensorOptions().dtype(s.dtype).device(a.device)));
    }
    return p;
  };
  k.clear();
  v.clear();
  for (int64_t l = 0; l < a.shape.n_layer; ++l) {
    k.push_back(make(a.k_parts));
    v.push_back(make(a.v_parts));
  }
}

void write_slots(Parts& buf, const Parts& src, const std::vector<int64_t>& src_idx,
                 const std::vector<int64_t>& dst_idx) {
  if (dst_idx.empty()) return;
  auto dst_range = as_range(dst_idx);
  for (size_t i = 0; i < buf.size(); ++i) {
    auto vals = select_slots(src[i], src_idx).to(buf[i].scalar_type());
    if (dst_range.second >= 0) {
      buf[i].narrow(2, dst_range.first, dst_range.second).copy_(vals);
    } else {
      buf[i].index_copy_(2, index_tensor(dst_idx, buf[i].device()), vals);
    }
  }
}

Parts read_slots(const Parts& buf, const std::vector<int64_t>& idx) {
  Parts out;
  for (const auto& t : buf) out.push_back(select_slots(t, idx));
  return out;
}

// ---- Contiguous ---------------------------------------------------------------------------

ContiguousLayout::ContiguousLayout(const LayoutArgs& a) : a_(a) {
  buf_.allocate(a_, a_.batch, a_.capacity);
}

void ContiguousLayout::write(int layer, int64_t pos0, const at::Tensor&, const at::Tensor&,
                             const Parts& k, const Parts& v, Recoder&) {
  const int64_t t = k[0].size(2);
  write_slots(buf_.k[layer], k, iota(0, t), iota(pos0, pos0 + t));
  write_slots(buf_.v[layer], v, iota(0, t), iota(pos0, pos0 + t));
}

Gathered ContiguousLayout::gather(int layer, int64_t n) const {
  Gathered g;
  g.pos = iota(0, n);
  g.bias.assign(static_cast<size_t>(n), 0.0f);
  g.k = read_slots(buf_.k[layer], g.pos);
  g.v = read_slots(buf_.v[layer], g.pos);
  return g;
}

std::vector<SlotRegion> ContiguousLayout::decode_regions(int layer, int64_t n) const {
  return {SlotRegion{buf_.k[layer], buf_.v[layer], {}, {}, n}};
}

std::vector<SlotRegion> ContiguousLayout::graph_regions(int layer) const {
  return {SlotRegion{buf_.k[layer], buf_.v[layer], {}, {}, a_.capacity}};
}
std::vector<int64_t> ContiguousLayout::graph_lens(int64_t n) const { return {n}; }
int64_t ContiguousLayout::graph_slot(int64_t pos) const { return pos; }
void ContiguousLayout::graph_prepare(int64_t, int64_t) {}

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

// ---- Sliding window -----------------------------------------------------------------------

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
    graph_bias_ = at::zeros({slots}, at::TensorOptions().dtype(at::kFloat).device(a_.device));
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

void SlidingWindowLayout::write(int layer, int64_t pos0, const at::Tensor&, const at::Tensor&,
                                const Parts& k, const Parts& v, Recoder&) {
  const int64_t t = k[0].size(2);
  // Only positions that survive this write, so no ring slot is written twice.
  std::vector<int64_t> src, dst;
  for (int64_t p : kept(pos0, pos0 + t, pos0 + t)) {
    src.push_back(p - pos0);
    dst.push_back(slot_of(p));
  }
  write_slots(buf_.k[layer], k, src, dst);
  write_slots(buf_.v[layer], v, src, dst);
}

Gathered SlidingWindowLayout::gather(int layer, int64_t n) const {
  Gathered g;
  g.pos = kept(0, n, n);
  g.bias.assign(g.pos.size(), 0.0f);
  std::vector<int64_t> slots;
  for (int64_t p : g.pos) slots.push_back(slot_of(p));
  g.k = read_slots(buf_.k[layer], slots);
  g.v = read_slots(buf_.v[layer], slots);
  return g;
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
  return {SlotRegion{
      buf_.k[layer], buf_.v[layer], {}, graph_bias_.unsqueeze(0).expand({a_.batch, slots}), slots}};
}

std::vector<int64_t> SlidingWindowLayout::graph_lens(int64_t n) const { return {stored(n)}; }

int64_t SlidingWindowLayout::graph_slot(int64_t pos) const { return slot_of(pos); }

void SlidingWindowLayout::graph_prepare(int64_t n, int64_t) {
  // decode_regions' mask: the slot of position n - window once it is stored but out of view
  // (0 elsewhere adds exactly nothing, so the step equals the eager one without a bias).
  std::vector<float> row(static_cast<size_t>(graph_bias_.numel()), 0.0f);
  if (n - window_ >= sinks_) row[static_cast<size_t>(slot_of(n - window_))] = kMaskedLogit;
  upload(graph_bias_, row.data(), graph_bias_.numel());
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
