#include "eli/cache/paged.h"

#include <ATen/TensorIndexing.h>
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "eli/error.h"

namespace eli::cache {

// ---- BlockPool ----------------------------------------------------------------------------

BlockPool::BlockPool(const LayoutArgs& a, int64_t num_blocks)
    : a_(a), num_blocks_(num_blocks), bs_(a.cfg.block_size) {
  ELI_CHECK(num_blocks_ >= 1, "paged cache: a pool of {} blocks (at least 1)", num_blocks_);
  storage_.allocate(a_, num_blocks_ + 1, bs_);
  const size_t n = static_cast<size_t>(num_blocks_);
  refs_.assign(n, 0);
  tokens_.assign(n, {});
  parent_.assign(n, -1);
  parent_epoch_.assign(n, 0);
  epoch_.assign(n, 0);
  key_.assign(n, 0);
  lru_at_.assign(n, lru_.end());
  in_lru_.assign(n, false);
  // Popped from the back: blocks go out in order 0, 1, 2, ...
  for (int64_t i = num_blocks_ - 1; i >= 0; --i) free_.push_back(static_cast<int32_t>(i));
}

void BlockPool::check_fits(const LayoutArgs& a) const {
  auto same_parts = [](const std::vector<PartSpec>& x, const std::vector<PartSpec>& y) {
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (x[i].width != y[i].width || x[i].dtype != y[i].dtype) return false;
    }
    return true;
  };
  ELI_CHECK(a.shape.n_layer == a_.shape.n_layer && a.shape.n_head == a_.shape.n_head &&
                a.shape.head_dim == a_.shape.head_dim && a.cfg.block_size == bs_ &&
                a.device == a_.device && same_parts(a.k_parts, a_.k_parts) &&
                same_parts(a.v_parts, a_.v_parts),
            "paged cache: the kept block pool does not fit this cache (pool: {} layers, {} heads "
            "of {}, block {} on {}; cache: {} layers, {} heads of {}, block {} on {}, or other "
            "codecs)",
            a_.shape.n_layer, a_.shape.n_head, a_.shape.head_dim, bs_, a_.device.str(),
            a.shape.n_layer, a.shape.n_head, a.shape.head_dim, a.cfg.block_size, a.device.str());
}

std::atomic<bool>& BlockPool::collide_for_test() {
  static std::atomic<bool> on{false};
  return on;
}

uint64_t BlockPool::key(int32_t parent, const int64_t* tokens) const {
  if (collide_for_test().load()) return 42;
  // FNV-1a over the parent's key and the block's tokens: a chain over the prefix.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int byte = 0; byte < 8; ++byte, v >>= 8) {
      h ^= v & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(parent < 0 ? 0 : key_[static_cast<size_t>(parent)]);
  for (int64_t i = 0; i < bs_; ++i) mix(static_cast<uint64_t>(tokens[i]));
  return h;
}

bool BlockPool::holds(int32_t c, int32_t parent, const int64_t* tokens) const {
  const size_t i = static_cast<size_t>(c);
  if (tokens_[i].empty() || parent_[i] != parent) return false;
  if (parent >= 0 && parent_epoch_[i] != epoch_[static_cast<size_t>(parent)]) return false;
  return std::equal(tokens_[i].begin(), tokens_[i].end(), tokens);
}

void BlockPool::unlist(int32_t block) {
  const size_t b = static_cast<size_t>(block);
  if (!in_lru_[b]) return;
  lru_.erase(lru_at_[b]);
  in_lru_[b] = false;
}

std::vector<int32_t> BlockPool::take(int64_t n) {
  ELI_CHECK(n <= available(),
            "paged cache: the block pool is exhausted: {} more blocks needed, {} of {} available "
            "(block size {}); raise CacheConfig.pool_blocks (spec paged(pool=N))",
            n, available(), num_blocks_, bs_);
  std::vector<int32_t> out;
  while (static_cast<int64_t>(out.size()) < n) {
    int32_t b;
    if (!free_.empty()) {
      b = free_.back();
      free_.pop_back();
    } else {  // evict the least recently released published block
      b = lru_.front();
      unlist(b);
      auto range = index_.equal_range(key_[static_cast<size_t>(b)]);
      for (auto it = range.first; it != range.second; ++it) {
        if (it->second == b) {
          index_.erase(it);
          break;
        }
      }
      tokens_[static_cast<size_t>(b)].clear();
    }
    refs_[static_cast<size_t>(b)] = 1;
    out.push_back(b);
  }
  return out;
}

void BlockPool::ref(int32_t block) {
  unlist(block);
  ++refs_[static_cast<size_t>(block)];
}

void BlockPool::unref(int32_t block) {
  const size_t b = static_cast<size_t>(block);
  ELI_CHECK(refs_[b] > 0, "paged cache: block {} released more often than taken", block);
  if (--refs_[b] > 0) return;
  if (tokens_[b].empty()) {
    free_.push_back(block);
  } else {
    lru_.push_back(block);
    lru_at_[b] = std::prev(lru_.end());
    in_lru_[b] = true;
  }
}

int32_t BlockPool::find(int32_t parent, const int64_t* tokens) {
  auto range = index_.equal_range(key(parent, tokens));
  for (auto it = range.first; it != range.second; ++it) {
    if (holds(it->second, parent, tokens)) {
      ref(it->second);
      return it->second;
    }
  }
  return -1;
}

void BlockPool::publish(int32_t block, int32_t parent, const int64_t* tokens) {
  const size_t b = static_cast<size_t>(block);
  if (!tokens_[b].empty()) return;  // published already (found, or published by a sequence)
  if (parent >= 0 && tokens_[static_cast<size_t>(parent)].empty()) return;  // parent not indexed
  const uint64_t k = key(parent, tokens);
  auto range = index_.equal_range(k);
  for (auto it = range.first; it != range.second; ++it) {
    if (holds(it->second, parent, tokens)) return;  // another block holds this pair already
  }
  tokens_[b].assign(tokens, tokens + bs_);
  parent_[b] = parent;
  parent_epoch_[b] = parent >= 0 ? epoch_[static_cast<size_t>(parent)] : 0;
  epoch_[b] = next_epoch_++;
  key_[b] = k;
  index_.emplace(k, block);
}

// ---- PagedLayout ----------------------------------------------------------------------------

PagedLayout::PagedLayout(const LayoutArgs& a)
    : a_(a),
      bs_(a.cfg.block_size),
      max_blocks_((a.capacity + a.cfg.block_size - 1) / a.cfg.block_size) {
  if (a.cfg.pool) {
    a.cfg.pool->check_fits(a_);
    pool_ = a.cfg.pool;
  } else {
    int64_t blocks = a.batch * max_blocks_;
    if (a.cfg.pool_blocks > 0) {
      blocks = a.cfg.pool_blocks;
    } else if (!a.cfg.seq_tokens.empty()) {
      ELI_CHECK(static_cast<int64_t>(a.cfg.seq_tokens.size()) == a.batch,
                "paged: CacheConfig.seq_tokens has {} entries for a batch of {} sequences",
                a.cfg.seq_tokens.size(), a.batch);
      blocks = 0;
      for (int64_t t : a.cfg.seq_tokens) {
        ELI_CHECK(t >= 0, "paged: CacheConfig.seq_tokens entry {} must be >= 0", t);
        blocks += (std::min(t, a.capacity) + bs_ - 1) / bs_;
      }
      blocks = std::max<int64_t>(blocks, 1);
    }
    pool_ = std::make_shared<BlockPool>(a_, blocks);
  }
  a_.cfg.pool.reset();  // the layout holds it in pool_
  table_.assign(static_cast<size_t>(a_.batch * max_blocks_), -1);
  // One device table for the cache's life, updated in place: a captured graph holds its address.
  table_dev_ =
      at::empty({a_.batch, max_blocks_}, at::TensorOptions().dtype(at::kInt).device(a_.device));
  upload(table_dev_, table_.data(), table_dev_.numel());
}

PagedLayout::~PagedLayout() {
  for (int32_t e : table_) {
    if (held(e)) pool_->unref(e);
  }
}

std::string PagedLayout::name() const {
  const bool sized = a_.cfg.pool_blocks > 0 || !a_.cfg.seq_tokens.empty();
  return sized ? fmt::format("paged(block={},pool={})", bs_, pool_->num_blocks())
               : fmt::format("paged(block={})", bs_);
}

void PagedLayout::reset() {
  for (int64_t b = 0; b < a_.batch; ++b) release(b);
}

void PagedLayout::release(int64_t seq) {
  ELI_CHECK(seq >= 0 && seq < a_.batch, "paged cache: release of sequence {} (batch {})", seq,
            a_.batch);
  bool changed = false;
  for (int64_t i = max_blocks_ - 1; i >= 0; --i) {
    int32_t& e = entry(seq, i);
    if (e < 0) continue;
    if (held(e)) pool_->unref(e);
    e = -1;
    changed = true;
  }
  if (changed) upload(table_dev_, table_.data(), table_dev_.numel());
}

int64_t PagedLayout::held_blocks() const {
  std::set<int32_t> held;
  for (int32_t e : table_) {
    if (this->held(e)) held.insert(e);
  }
  return static_cast<int64_t>(held.size());
}

void PagedLayout::ensure_blocks(const std::vector<int64_t>& n_end) {
  int64_t missing = 0;
  for (int64_t b = 0; b < a_.batch; ++b) {
    const int64_t need = (n_end[static_cast<size_t>(b)] + bs_ - 1) / bs_;
    for (int64_t i = 0; i < need; ++i) missing += !held(entry(b, i));
  }
  if (missing == 0) return;
  const std::vector<int32_t> got = pool_->take(missing);
  size_t next = 0;
  for (int64_t b = 0; b < a_.batch; ++b) {
    const int64_t need = (n_end[static_cast<size_t>(b)] + bs_ - 1) / bs_;
    for (int64_t i = 0; i < need; ++i) {
      if (!held(entry(b, i))) entry(b, i) = got[next++];
    }
  }
  upload(table_dev_, table_.data(), table_dev_.numel());
}

void PagedLayout::ensure_seq_blocks(int64_t seq, int64_t n_end) {
  std::vector<int64_t> n(static_cast<size_t>(a_.batch), 0);
  n[static_cast<size_t>(seq)] = n_end;
  ensure_blocks(n);
}

int64_t PagedLayout::reuse_prefix(int64_t seq, const std::vector<int64_t>& tokens, int64_t have) {
  ELI_CHECK(have % bs_ == 0, "paged cache: prefix reuse after {} positions (not whole blocks)",
            have);
  const int64_t limit = static_cast<int64_t>(tokens.size()) - 1;  // the last token is computed
  int64_t n = have;
  bool changed = false;
  while (n + bs_ <= limit && n / bs_ < max_blocks_ && !held(entry(seq, n / bs_))) {
    const int32_t parent = n >= bs_ ? entry(seq, n / bs_ - 1) : -1;
    const int32_t b = pool_->find(parent, tokens.data() + n);
    if (b < 0) break;
    entry(seq, n / bs_) = b;
    n += bs_;
    changed = true;
  }
  if (changed) upload(table_dev_, table_.data(), table_dev_.numel());
  return n;
}

void PagedLayout::publish_prefix(int64_t seq, const std::vector<int64_t>& tokens, int64_t n) {
  const int64_t full = std::min<int64_t>(n, static_cast<int64_t>(tokens.size())) / bs_;
  for (int64_t i = 0; i < full; ++i) {
    if (!held(entry(seq, i))) break;
    pool_->publish(entry(seq, i), i > 0 ? entry(seq, i - 1) : -1, tokens.data() + i * bs_);
  }
}

void PagedLayout::write(const WriteArgs& w) {
  const int layer = w.layer;
  const int64_t pos0 = w.pos0;
  const Parts &k = w.k, &v = w.v;
  const int64_t t = k[0].size(2);
  ensure_blocks(std::vector<int64_t>(static_cast<size_t>(a_.batch), pos0 + t));
  SlotBuffers& pool = pool_->storage();
  if (pos0 / bs_ == (pos0 + t - 1) / bs_) {
    // One block per sequence (every decode step): its pool rows come from the device table,
    // no host->device copy.
    const auto blk = table_dev_.select(1, pos0 / bs_).to(at::kLong);
    auto put = [&](Parts& dst, const Parts& src) {
      for (size_t i = 0; i < dst.size(); ++i) {
        dst[i].narrow(2, pos0 % bs_, t).index_copy_(0, blk, src[i].to(dst[i].scalar_type()));
      }
    };
    put(pool.k[layer], k);
    put(pool.v[layer], v);
    return;
  }
  std::vector<int64_t> blk, slot;  // per (b, token), b-major like src.permute(0, 2, 1, 3)
  for (int64_t b = 0; b < a_.batch; ++b) {
    for (int64_t p = pos0; p < pos0 + t; ++p) {
      blk.push_back(entry(b, p / bs_));
      slot.push_back(p % bs_);
    }
  }
  auto opts = at::TensorOptions().dtype(at::kLong);
  auto blk_t = at::tensor(blk, opts).to(a_.device);
  auto slot_t = at::tensor(slot, opts).to(a_.device);
  using at::indexing::Slice;
  auto put = [&](Parts& dst, const Parts& src) {
    for (size_t i = 0; i < dst.size(); ++i) {
      auto vals = src[i].permute({0, 2, 1, 3}).reshape({a_.batch * t, a_.shape.n_head, -1});
      dst[i].index_put_({blk_t, Slice(), slot_t}, vals.to(dst[i].scalar_type()));
    }
  };
  put(pool.k[layer], k);
  put(pool.v[layer], v);
}

void PagedLayout::write_seq(int64_t seq, const WriteArgs& w) {
  const int layer = w.layer;
  const int64_t pos0 = w.pos0;
  const Parts &k = w.k, &v = w.v;
  const int64_t t = k[0].size(2);
  ensure_seq_blocks(seq, pos0 + t);
  SlotBuffers& pool = pool_->storage();
  // Positions [pos0, pos0 + t) in runs that stay inside one block.
  for (int64_t p = pos0; p < pos0 + t;) {
    const int64_t run = std::min(pos0 + t - p, bs_ - p % bs_);
    const int64_t blk = entry(seq, p / bs_);
    for (size_t i = 0; i < k.size(); ++i) {
      pool.k[layer][i]
          .select(0, blk)
          .narrow(1, p % bs_, run)
          .copy_(k[i].select(0, 0).narrow(1, p - pos0, run));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      pool.v[layer][i]
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
    for (const auto& p : pool) {
      out.push_back(p.narrow(0, 0, 1).narrow(2, 0, 0).expand({rows, -1, -1, -1}));
    }
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
  g.k = through_table(pool_->storage().k[layer], table_dev_, n);
  g.v = through_table(pool_->storage().v[layer], table_dev_, n);
  return g;
}

Gathered PagedLayout::gather_seq(int64_t seq, int layer, int64_t n) const {
  Gathered g;
  for (int64_t i = 0; i < n; ++i) g.pos.push_back(i);
  g.bias.assign(static_cast<size_t>(n), 0.0f);
  const at::Tensor row = table_dev_.narrow(0, seq, 1);
  g.k = through_table(pool_->storage().k[layer], row, n);
  g.v = through_table(pool_->storage().v[layer], row, n);
  return g;
}

std::vector<SlotRegion> PagedLayout::decode_regions(int layer, int64_t n) const {
  return {SlotRegion{pool_->storage().k[layer], pool_->storage().v[layer], table_dev_, {}, n}};
}

std::vector<SlotRegion> PagedLayout::graph_regions(int layer) const {
  return {SlotRegion{
      pool_->storage().k[layer], pool_->storage().v[layer], table_dev_, {}, max_blocks_ * bs_}};
}
std::vector<int64_t> PagedLayout::graph_lens(int64_t n) const { return {n}; }
int64_t PagedLayout::graph_slot(int64_t pos) const { return pos; }
void PagedLayout::graph_prepare(const std::vector<int64_t>&, const std::vector<int64_t>& pos) {
  std::vector<int64_t> n_end(pos);
  bool idle = false;
  for (size_t b = 0; b < pos.size(); ++b) {
    n_end[b] = pos[b] + 1;
    if (pos[b] < 0 && entry(static_cast<int64_t>(b), 0) < 0) {
      // An idle row (a released sequence) writes its step into the scratch block.
      entry(static_cast<int64_t>(b), 0) = pool_->scratch();
      idle = true;
    }
  }
  if (idle) upload(table_dev_, table_.data(), table_dev_.numel());
  ensure_blocks(n_end);
}

void PagedLayout::for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn) {
  fn(pool_->storage().side(layer, is_v));
}

Footprint PagedLayout::footprint(int64_t n) const {
  Footprint f;
  const int64_t nb = (n + bs_ - 1) / bs_;
  f.stored_per_seq = n;
  f.slots_stored = a_.batch * n;
  f.slots_allocated = (pool_->num_blocks() + 1) * bs_;  // the scratch block included
  f.blocks_in_use = a_.batch * nb;
  f.blocks_total = pool_->num_blocks();
  f.padding_slots = a_.batch * (nb * bs_ - n);
  f.metadata_bytes = a_.batch * max_blocks_ * static_cast<int64_t>(sizeof(int32_t));
  return f;
}

}  // namespace eli::cache
