#include "eli/cache/chunked.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "eli/error.h"

namespace eli::cache {

ChunkedLayout::ChunkedLayout(const LayoutArgs& a)
    : a_(a),
      chunk_(a.cfg.chunk_size),
      keep_(a.cfg.keep_last),
      ring_(std::min<int64_t>(int64_t{a.cfg.keep_last} + a.cfg.chunk_size, a.capacity)),
      max_summaries_(std::max<int64_t>(a.capacity - a.cfg.keep_last, 0) / a.cfg.chunk_size) {
  ring_buf_.allocate(a_, a_.batch, ring_);
  sum_buf_.allocate(a_, a_.batch, max_summaries_);
  if (fused_decode_tables(a_.device)) {
    auto i = at::arange(2 * ring_, at::kLong).remainder(ring_).unsqueeze(0);  // [1, 2 ring]
    auto c = at::arange(ring_ + 1, at::kLong).unsqueeze(1);                   // [ring + 1, 1]
    ring_mask_ = at::where(i < c, at::zeros({}, at::kFloat), at::full({}, kMaskedLogit, at::kFloat))
                     .contiguous()
                     .to(a_.device);
    sum_bias_ =
        at::full({std::max<int64_t>(max_summaries_, 1)}, std::log(static_cast<float>(chunk_)),
                 at::TensorOptions().dtype(at::kFloat).device(a_.device));
    graph_ring_bias_ =
        at::zeros({a_.batch, ring_}, at::TensorOptions().dtype(at::kFloat).device(a_.device));
  }
}

std::string ChunkedLayout::name() const {
  return fmt::format("chunked(chunk={},keep={},bias={})", chunk_, keep_,
                     a_.cfg.summary_log_bias ? 1 : 0);
}

int64_t ChunkedLayout::summaries(int64_t n) const {
  return std::max<int64_t>(n - keep_, 0) / chunk_;
}

void ChunkedLayout::write(const WriteArgs& w) { write_rows(0, a_.batch, w); }

void ChunkedLayout::write_seq(int64_t seq, const WriteArgs& w) { write_rows(seq, 1, w); }

void ChunkedLayout::write_rows(int64_t b0, int64_t nb, const WriteArgs& w) {
  ELI_CHECK(w.recoder != nullptr && w.xk.defined() && w.xv.defined(),
            "{}: a write needs WriteArgs::xk, xv and recoder (chunks are pooled from the rows)",
            name());
  const int layer = w.layer;
  const int64_t pos0 = w.pos0;
  Recoder& rc = *w.recoder;
  const int64_t t = w.k[0].size(2);
  auto ring = [&](bool is_v) { return seq_rows(ring_buf_.side(layer, is_v), b0, nb); };
  auto sums = [&](bool is_v) { return seq_rows(sum_buf_.side(layer, is_v), b0, nb); };
  const int64_t n1 = pos0 + t;
  const int64_t s0 = summaries(pos0), s1 = summaries(n1);
  // Pool every chunk that became old, before the ring slots it occupies are reused. Tokens of
  // earlier appends come from the ring (as stored); tokens of this append at full precision.
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t c0 = s * chunk_, c1 = c0 + chunk_;
    auto pooled = [&](bool is_v) {
      std::vector<at::Tensor> pieces;
      if (c0 < pos0) {
        std::vector<int64_t> slots;
        for (int64_t p = c0; p < std::min(c1, pos0); ++p) slots.push_back(p % ring_);
        pieces.push_back(rc.decode_rows(layer, is_v, read_slots(ring(is_v), slots)));
      }
      if (c1 > pos0) {
        const int64_t from = std::max(c0, pos0);
        pieces.push_back((is_v ? w.xv : w.xk).narrow(2, from - pos0, c1 - from).to(at::kFloat));
      }
      auto mean = at::cat(pieces, 2).mean(2, true);  // [B, H, 1, D]
      Parts dst = sums(is_v);
      write_slots(dst, rc.encode_rows(layer, is_v, mean), {0}, {s});
    };
    pooled(false);
    pooled(true);
  }
  std::vector<int64_t> src, dst;
  for (int64_t p = std::max(pos0, s1 * chunk_); p < n1; ++p) {
    src.push_back(p - pos0);
    dst.push_back(p % ring_);
  }
  Parts rk = ring(false), rv = ring(true);
  write_slots(rk, w.k, src, dst);
  write_slots(rv, w.v, src, dst);
}

Gathered ChunkedLayout::gather(int layer, int64_t n) const {
  return gather_rows(0, a_.batch, layer, n);
}

Gathered ChunkedLayout::gather_seq(int64_t seq, int layer, int64_t n) const {
  return gather_rows(seq, 1, layer, n);
}

Gathered ChunkedLayout::gather_rows(int64_t b0, int64_t nb, int layer, int64_t n) const {
  Gathered g;
  const int64_t s = summaries(n);
  const float bias = a_.cfg.summary_log_bias ? std::log(static_cast<float>(chunk_)) : 0.0f;
  std::vector<int64_t> sum_slots, ring_slots;
  for (int64_t i = 0; i < s; ++i) {
    sum_slots.push_back(i);
    g.pos.push_back(-1);
    g.bias.push_back(bias);
  }
  for (int64_t p = s * chunk_; p < n; ++p) {
    ring_slots.push_back(p % ring_);
    g.pos.push_back(p);
    g.bias.push_back(0.0f);
  }
  auto join = [&](bool is_v) {
    const Parts sb = seq_rows(is_v ? sum_buf_.v[layer] : sum_buf_.k[layer], b0, nb);
    const Parts rb = seq_rows(is_v ? ring_buf_.v[layer] : ring_buf_.k[layer], b0, nb);
    Parts a = read_slots(sb, sum_slots), b = read_slots(rb, ring_slots), out;
    for (size_t i = 0; i < a.size(); ++i) {
      out.push_back(s == 0 ? b[i] : at::cat({a[i], b[i]}, 2));
    }
    return out;
  };
  g.k = join(false);
  g.v = join(true);
  return g;
}

std::vector<SlotRegion> ChunkedLayout::decode_regions(int layer, int64_t n) const {
  std::vector<SlotRegion> out;
  const int64_t s = summaries(n);
  if (s > 0) {
    SlotRegion r{sum_buf_.k[layer], sum_buf_.v[layer], {}, {}, s};
    if (a_.cfg.summary_log_bias) r.bias = sum_bias_.unsqueeze(0).expand({a_.batch, max_summaries_});
    out.push_back(r);
  }
  // Exact positions [s * chunk, n) sit in ring slots p % ring: c slots from a on, cyclically.
  const int64_t a = (s * chunk_) % ring_, c = n - s * chunk_;
  if (c > 0) {
    SlotRegion r{ring_buf_.k[layer], ring_buf_.v[layer], {}, {}, std::min(a + c, ring_)};
    if (a > 0) {
      r.bias = ring_mask_.select(0, c)
                   .narrow(0, ring_ - a, ring_)
                   .unsqueeze(0)
                   .expand({a_.batch, ring_});
    }
    out.push_back(r);
  }
  return out;
}

std::vector<SlotRegion> ChunkedLayout::graph_regions(int layer) const {
  std::vector<SlotRegion> out;
  if (max_summaries_ > 0) {
    SlotRegion r{sum_buf_.k[layer], sum_buf_.v[layer], {}, {}, max_summaries_};
    if (a_.cfg.summary_log_bias) r.bias = sum_bias_.unsqueeze(0).expand({a_.batch, max_summaries_});
    out.push_back(r);
  }
  out.push_back(SlotRegion{ring_buf_.k[layer], ring_buf_.v[layer], {}, graph_ring_bias_, ring_});
  return out;
}

std::vector<int64_t> ChunkedLayout::graph_lens(int64_t n) const {
  const int64_t s = summaries(n), a = (s * chunk_) % ring_, c = n - s * chunk_;
  std::vector<int64_t> lens;
  if (max_summaries_ > 0) lens.push_back(s);
  lens.push_back(std::min(a + c, ring_));
  return lens;
}

void ChunkedLayout::graph_prepare(const std::vector<int64_t>& n, const std::vector<int64_t>&) {
  // decode_regions' ring mask, a row per sequence: slot i holds a visible position when it is
  // among the c slots from a on, cyclically (0 adds exactly nothing where the eager step has no
  // bias).
  std::vector<float> rows(static_cast<size_t>(graph_ring_bias_.numel()));
  for (size_t b = 0; b < n.size(); ++b) {
    const int64_t s = summaries(n[b]), a = (s * chunk_) % ring_, c = n[b] - s * chunk_;
    for (int64_t i = 0; i < ring_; ++i) {
      rows[b * static_cast<size_t>(ring_) + static_cast<size_t>(i)] =
          (i - a + ring_) % ring_ < c ? 0.0f : kMaskedLogit;
    }
  }
  upload(graph_ring_bias_, rows.data(), graph_ring_bias_.numel());
}

void ChunkedLayout::for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn) {
  fn(ring_buf_.side(layer, is_v));
  fn(sum_buf_.side(layer, is_v));
}

Footprint ChunkedLayout::footprint(int64_t n) const {
  Footprint f;
  const int64_t s = summaries(n);
  f.stored_per_seq = s + (n - s * chunk_);
  f.evicted_per_seq = s * chunk_;
  f.slots_stored = a_.batch * f.stored_per_seq;
  f.slots_allocated = a_.batch * (ring_ + max_summaries_);
  return f;
}

}  // namespace eli::cache
