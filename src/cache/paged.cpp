#include "eli/cache/paged.h"

#include <ATen/TensorIndexing.h>
#include <fmt/format.h>

#include "eli/error.h"

namespace eli::cache {

PagedLayout::PagedLayout(const LayoutArgs& a)
    : a_(a),
      bs_(a.cfg.block_size),
      max_blocks_((a.capacity + a.cfg.block_size - 1) / a.cfg.block_size),
      num_blocks_(a.batch * max_blocks_) {
  pool_.allocate(a_, num_blocks_, bs_);
  reset();
}

std::string PagedLayout::name() const { return fmt::format("paged(block={})", bs_); }

void PagedLayout::reset() {
  table_.assign(static_cast<size_t>(a_.batch * max_blocks_), -1);
  free_.clear();
  // Popped from the back: blocks go out in order 0, 1, 2, ... across sequences, so the
  // tables of a batch interleave and the gather through the table is not an identity.
  for (int64_t i = num_blocks_ - 1; i >= 0; --i) free_.push_back(static_cast<int32_t>(i));
  // One device table for the cache's life, updated in place: a captured graph holds its address.
  if (!table_dev_.defined()) {
    table_dev_ =
        at::empty({a_.batch, max_blocks_}, at::TensorOptions().dtype(at::kInt).device(a_.device));
  }
  upload(table_dev_, table_.data(), table_dev_.numel());
}

void PagedLayout::ensure_blocks(int64_t n_end) {
  const int64_t need = (n_end + bs_ - 1) / bs_;
  bool changed = false;
  for (int64_t i = 0; i < need; ++i) {
    for (int64_t b = 0; b < a_.batch; ++b) {
      int32_t& e = table_[static_cast<size_t>(b * max_blocks_ + i)];
      if (e >= 0) continue;
      ELI_CHECK(!free_.empty(), "paged cache: block pool exhausted ({} blocks)", num_blocks_);
      e = free_.back();
      free_.pop_back();
      changed = true;
    }
  }
  if (changed) upload(table_dev_, table_.data(), table_dev_.numel());
}

void PagedLayout::write(int layer, int64_t pos0, const at::Tensor&, const at::Tensor&,
                        const Parts& k, const Parts& v, Recoder&) {
  const int64_t t = k[0].size(2);
  ensure_blocks(pos0 + t);
  if (pos0 / bs_ == (pos0 + t - 1) / bs_) {
    // One block per sequence (every decode step): its pool rows come from the device table,
    // no host->device copy.
    const auto blk = table_dev_.select(1, pos0 / bs_).to(at::kLong);
    auto put = [&](Parts& pool, const Parts& src) {
      for (size_t i = 0; i < pool.size(); ++i) {
        pool[i].narrow(2, pos0 % bs_, t).index_copy_(0, blk, src[i].to(pool[i].scalar_type()));
      }
    };
    put(pool_.k[layer], k);
    put(pool_.v[layer], v);
    return;
  }
  std::vector<int64_t> blk, slot;  // per (b, token), b-major like src.permute(0, 2, 1, 3)
  for (int64_t b = 0; b < a_.batch; ++b) {
    for (int64_t p = pos0; p < pos0 + t; ++p) {
      blk.push_back(table_[static_cast<size_t>(b * max_blocks_ + p / bs_)]);
      slot.push_back(p % bs_);
    }
  }
  auto opts = at::TensorOptions().dtype(at::kLong);
  auto blk_t = at::tensor(blk, opts).to(a_.device);
  auto slot_t = at::tensor(slot, opts).to(a_.device);
  using at::indexing::Slice;
  auto put = [&](Parts& pool, const Parts& src) {
    for (size_t i = 0; i < pool.size(); ++i) {
      auto vals = src[i].permute({0, 2, 1, 3}).reshape({a_.batch * t, a_.shape.n_head, -1});
      pool[i].index_put_({blk_t, Slice(), slot_t}, vals.to(pool[i].scalar_type()));
    }
  };
  put(pool_.k[layer], k);
  put(pool_.v[layer], v);
}

Gathered PagedLayout::gather(int layer, int64_t n) const {
  Gathered g;
  for (int64_t i = 0; i < n; ++i) g.pos.push_back(i);
  g.bias.assign(static_cast<size_t>(n), 0.0f);
  if (n == 0) {
    for (const auto& p : pool_.k[layer]) g.k.push_back(p.narrow(0, 0, a_.batch).narrow(2, 0, 0));
    for (const auto& p : pool_.v[layer]) g.v.push_back(p.narrow(0, 0, a_.batch).narrow(2, 0, 0));
    return g;
  }
  const int64_t nb = (n + bs_ - 1) / bs_;
  auto idx = table_dev_.narrow(1, 0, nb).reshape({-1}).to(at::kLong);
  const int64_t h = a_.shape.n_head;
  auto through_table = [&](const Parts& pool) {
    Parts out;
    for (const auto& p : pool) {
      const int64_t w = p.size(3);
      out.push_back(p.index_select(0, idx)
                        .view({a_.batch, nb, h, bs_, w})
                        .permute({0, 2, 1, 3, 4})
                        .reshape({a_.batch, h, nb * bs_, w})
                        .narrow(2, 0, n));
    }
    return out;
  };
  g.k = through_table(pool_.k[layer]);
  g.v = through_table(pool_.v[layer]);
  return g;
}

std::vector<SlotRegion> PagedLayout::decode_regions(int layer, int64_t n) const {
  return {SlotRegion{pool_.k[layer], pool_.v[layer], table_dev_, {}, n}};
}

std::vector<SlotRegion> PagedLayout::graph_regions(int layer) const {
  return {SlotRegion{pool_.k[layer], pool_.v[layer], table_dev_, {}, max_blocks_ * bs_}};
}
std::vector<int64_t> PagedLayout::graph_lens(int64_t n) const { return {n}; }
int64_t PagedLayout::graph_slot(int64_t pos) const { return pos; }
void PagedLayout::graph_prepare(int64_t, int64_t pos) { ensure_blocks(pos + 1); }

void PagedLayout::for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn) {
  fn(pool_.side(layer, is_v));
}

Footprint PagedLayout::footprint(int64_t n) const {
  Footprint f;
  const int64_t nb = (n + bs_ - 1) / bs_;
  f.stored_per_seq = n;
  f.slots_stored = a_.batch * n;
  f.slots_allocated = num_blocks_ * bs_;
  f.blocks_in_use = a_.batch * nb;
  f.blocks_total = num_blocks_;
  f.padding_slots = a_.batch * (nb * bs_ - n);
  f.metadata_bytes = a_.batch * max_blocks_ * static_cast<int64_t>(sizeof(int32_t));
  return f;
}

}  // namespace eli::cache
