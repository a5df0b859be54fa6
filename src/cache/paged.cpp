#include "eli/cache/paged.h"

#include <ATen/TensorIndexing.h>
#include <fmt/format.h>

#include <algorithm>

#include "eli/error.h"

namespace eli::cache {

PagedLayout::PagedLayout(const LayoutArgs& a)
    : a_(a),
      bs_(a.cfg.block_size),
      max_blocks_((a.capacity + a.cfg.block_size - 1) / a.cfg.block_size),
      num_blocks_(a.cfg.pool_blocks > 0 ? a.cfg.pool_blocks : a.batch * max_blocks_) {
  pool_.allocate(a_, num_blocks_, bs_);
  reset();
}

std::string PagedLayout::name() const {
  return a_.cfg.pool_blocks > 0 ? fmt::format("paged(block={},pool={})", bs_, num_blocks_)
                                : fmt::format("paged(block={})", bs_);
}

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

void PagedLayout::release(int64_t seq) {
  ELI_CHECK(seq >= 0 && seq < a_.batch, "paged cache: release of sequence {} (batch {})", seq,
            a_.batch);
  bool changed = false;
  for (int64_t i = max_blocks_ - 1; i >= 0; --i) {
    int32_t& e = table_[static_cast<size_t>(seq * max_blocks_ + i)];
    if (e < 0) continue;
    free_.push_back(e);
    e = -1;
    changed = true;
  }
  if (changed) upload(table_dev_, table_.data(), table_dev_.numel());
}

void PagedLayout::ensure_blocks(const std::vector<int64_t>& n_end) {
  int64_t missing = 0;
  for (int64_t b = 0; b < a_.batch; ++b) {
    const int64_t need = (n_end[static_cast<size_t>(b)] + bs_ - 1) / bs_;
    for (int64_t i = 0; i < need; ++i)
      missing += table_[static_cast<size_t>(b * max_blocks_ + i)] < 0;
  }
  if (missing == 0) return;
  ELI_CHECK(missing <= free_blocks(),
            "paged cache: the block pool is exhausted: {} more blocks needed, {} of {} free (block "
            "size {}); raise CacheConfig.pool_blocks (spec paged(pool=N))",
            missing, free_blocks(), num_blocks_, bs_);
  for (int64_t b = 0; b < a_.batch; ++b) {
    const int64_t need = (n_end[static_cast<size_t>(b)] + bs_ - 1) / bs_;
    for (int64_t i = 0; i < need; ++i) {
      int32_t& e = table_[static_cast<size_t>(b * max_blocks_ + i)];
      if (e >= 0) continue;
      e = free_.back();
      free_.pop_back();
    }
  }
  upload(table_dev_, table_.data(), table_dev_.numel());
}

void PagedLayout::ensure_seq_blocks(int64_t seq, int64_t n_end) {
  std::vector<int64_t> n(static_cast<size_t>(a_.batch), 0);
  n[static_cast<size_t>(seq)] = n_end;
  ensure_blocks(n);
}

void PagedLayout::write(int layer, int64_t pos0, const at::Tensor&, const at::Tensor&,
                        const Parts& k, const Parts& v, Recoder&) {
  const int64_t t = k[0].size(2);
  ensure_blocks(std::vector<int64_t>(static_cast<size_t>(a_.batch), pos0 + t));
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

void PagedLayout::write_seq(int64_t seq, int layer, int64_t pos0, const at::Tensor&,
                            const at::Tensor&, const Parts& k, const Parts& v, Recoder&) {
  const int64_t t = k[0].size(2);
  ensure_seq_blocks(seq, pos0 + t);
  // Positions [pos0, pos0 + t) in runs that stay inside one block.
  for (int64_t p = pos0; p < pos0 + t;) {
    const int64_t run = std::min(pos0 + t - p, bs_ - p % bs_);
    const int64_t blk = table_[static_cast<size_t>(seq * max_blocks_ + p / bs_)];
    for (size_t i = 0; i < k.size(); ++i) {
      pool_.k[layer][i]
          .select(0, blk)
          .narrow(1, p % bs_, run)
          .copy_(k[i].select(0, 0).narrow(1, p - pos0, run));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      pool_.v[layer][i]
          .select(0, blk)
          .narrow(1, p % bs_, run)
          .copy_(v[i].select(0, 0).narrow(1, p - pos0, run));
    }
    p += run;
  }
}

Parts PagedLayout::through_table(const Parts& pool, const at::Tensor& table_rows, int64_t n) const {
  const int64_t rows = table_rows.size(0), nb = (n + bs_ - 1) / bs_;
  const int64_t h = a_.shape.n_head;
  Parts out;
  if (n == 0) {
    for (const auto& p : pool)
      out.push_back(p.narrow(0, 0, 1).narrow(2, 0, 0).expand({rows, -1, -1, -1}));
    return out;
  }
  auto idx = table_rows.narrow(1, 0, nb).reshape({-1}).to(at::kLong);
  for (const auto& p : pool) {
    const int64_t w = p.size(3);
    out.push_back(p.index_select(0, idx)
                      .view({rows, nb, h, bs_, w})
                      .permute({0, 2, 1, 3, 4})
                      .reshape({rows, h, nb * bs_, w})
                      .narrow(2, 0, n));
  }
  return out;
}

Gathered PagedLayout::gather(int layer, int64_t n) const {
  Gathered g;
  for (int64_t i = 0; i < n; ++i) g.pos.push_back(i);
  g.bias.assign(static_cast<size_t>(n), 0.0f);
  g.k = through_table(pool_.k[layer], table_dev_, n);
  g.v = through_table(pool_.v[layer], table_dev_, n);
  return g;
}

Gathered PagedLayout::gather_seq(int64_t seq, int layer, int64_t n) const {
  Gathered g;
  for (int64_t i = 0; i < n; ++i) g.pos.push_back(i);
  g.bias.assign(static_cast<size_t>(n), 0.0f);
  const at::Tensor row = table_dev_.narrow(0, seq, 1);
  g.k = through_table(pool_.k[layer], row, n);
  g.v = through_table(pool_.v[layer], row, n);
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
void PagedLayout::graph_prepare(const std::vector<int64_t>&, const std::vector<int64_t>& pos) {
  std::vector<int64_t> n_end(pos);
  for (auto& p : n_end) p += 1;
  ensure_blocks(n_end);
}

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
