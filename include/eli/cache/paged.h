#pragma once
/// The paged layout (method paged_attention, spec layout `paged`). Requirements of a layout:
/// eli/cache/layout.h.

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "eli/cache/layout.h"

namespace eli::cache {

/// The block pool of paged caches: storage for num_blocks blocks (a block holds block_size
/// positions of one sequence, every layer, K and V), reference counts, and the prefix index:
/// a full block is published as (its parent block, its tokens) and found again by the same
/// pair (a hash chain over the blocks selects candidates; the parent, as published, and the
/// tokens are compared, so a hash collision never shares a block, and neither does a parent
/// slot reused for other tokens since). A block whose last reference goes stays findable until
/// the pool needs it (least recently released first). One pool serves the sequences of a
/// cache, and successive caches when the caller keeps it (CacheConfig::pool). Not thread-safe.
class BlockPool {
 public:
  /// Storage for `num_blocks` blocks of the layout `a` describes.
  BlockPool(const LayoutArgs& a, int64_t num_blocks);
  /// eli::Error unless a layout of `a` can use this pool (same shape, parts, block size,
  /// device).
  void check_fits(const LayoutArgs& a) const;
  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return bs_; }
  /// Blocks with no reference (free, or published and kept for reuse).
  int64_t available() const { return static_cast<int64_t>(free_.size() + lru_.size()); }
  /// Unreferenced published blocks (found again by their prefix until evicted).
  int64_t cached() const { return static_cast<int64_t>(lru_.size()); }
  int32_t refcount(int32_t block) const { return refs_[static_cast<size_t>(block)]; }
  /// One more block past num_blocks(), never handed out: where a graph step's idle rows write.
  int32_t scratch() const { return static_cast<int32_t>(num_blocks_); }
  SlotBuffers& storage() { return storage_; }
  const SlotBuffers& storage() const { return storage_; }
  /// n blocks with one reference each, free ones first, then the least recently released
  /// cached ones (evicted from the index). eli::Error, taking nothing, when fewer are available.
  std::vector<int32_t> take(int64_t n);
  void ref(int32_t block);
  void unref(int32_t block);
  /// The published block holding `tokens` (block_size of them) after block `parent` (-1: the
  /// first block of a sequence), with a reference taken; -1 when there is none.
  int32_t find(int32_t parent, const int64_t* tokens);
  /// Publishes `block` as the one holding `tokens` after `parent` (a published block or -1);
  /// no-op when `block` is published already or another block holds that pair.
  void publish(int32_t block, int32_t parent, const int64_t* tokens);
  /// Test hook: every prefix hashes to the same key (lookups must still compare tokens).
  static std::atomic<bool>& collide_for_test();

 private:
  uint64_t key(int32_t parent, const int64_t* tokens) const;
  // Whether block c is published as `tokens` after `parent` as it is now.
  bool holds(int32_t c, int32_t parent, const int64_t* tokens) const;
  void unlist(int32_t block);
  LayoutArgs a_;
  int64_t num_blocks_, bs_;
  SlotBuffers storage_;  // [num_blocks + 1 (scratch), H, block_size, w] per layer, K and V
  std::vector<int32_t> refs_;
  // Per block, when published: its tokens, its parent and the parent's epoch then, its key and
  // its own epoch (new at every publication: children published under an earlier content of
  // the same slot no longer match).
  std::vector<std::vector<int64_t>> tokens_;  // empty = not published
  std::vector<int32_t> parent_;
  std::vector<uint64_t> parent_epoch_, epoch_, key_;
  uint64_t next_epoch_ = 1;
  std::vector<int32_t> free_;  // stack of unreferenced blocks that are not published
  std::list<int32_t> lru_;     // unreferenced published blocks, least recently released first
  std::vector<std::list<int32_t>::iterator> lru_at_;
  std::vector<bool> in_lru_;
  std::unordered_multimap<uint64_t, int32_t> index_;
};

/// Fixed-size blocks from a BlockPool shared by the batch's sequences (CacheConfig::pool, or a
/// pool of the cache's own of CacheConfig::pool_blocks blocks; 0 = batch * ceil(capacity /
/// block_size), enough for every sequence at capacity), handed out as sequences grow and
/// returned on reset(), release(seq) and destruction. A write that needs more blocks than are
/// available is an eli::Error that changes nothing. Per-sequence block tables (int32 [B,
/// max_blocks], -1 = none) map logical block i to a pool block. Prefix reuse: reuse_prefix maps
/// a sequence's leading full blocks to published blocks of the same tokens; publish_prefix
/// publishes a sequence's full blocks.
class PagedLayout {
 public:
  explicit PagedLayout(const LayoutArgs& a);
  ~PagedLayout();
  PagedLayout(const PagedLayout&) = delete;
  PagedLayout& operator=(const PagedLayout&) = delete;
  std::string name() const;
  void write(const WriteArgs& w);
  void write_seq(int64_t seq, const WriteArgs& w);
  Gathered gather(int layer, int64_t n) const;
  Gathered gather_seq(int64_t seq, int layer, int64_t n) const;
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
  void reset();
  /// Returns sequence seq's blocks to the pool; it then holds no positions.
  void release(int64_t seq);
  /// Sequence seq holds `have` positions (a multiple of block_size): maps its next logical
  /// blocks to published blocks of the same prefix of `tokens`, leaving at least the last token
  /// to compute. Returns the positions it holds afterwards.
  int64_t reuse_prefix(int64_t seq, const std::vector<int64_t>& tokens, int64_t have);
  /// Publishes sequence seq's full blocks within tokens[0, min(n, |tokens|)) (n: positions it
  /// holds).
  void publish_prefix(int64_t seq, const std::vector<int64_t>& tokens, int64_t n);
  /// Distinct pool blocks the batch's tables hold (shared blocks once).
  int64_t held_blocks() const;
  /// int32 [B, max_blocks] on the cache's device (-1 = unallocated), updated in place.
  const at::Tensor& block_table() const { return table_dev_; }
  int64_t free_blocks() const { return pool_->available(); }
  int64_t pool_blocks() const { return pool_->num_blocks(); }
  int64_t block_size() const { return bs_; }
  const std::shared_ptr<BlockPool>& pool() const { return pool_; }

 private:
  /// Gives sequence b the blocks for positions [0, n_end[b]) (all or, when the pool has too few
  /// available blocks, none: eli::Error).
  void ensure_blocks(const std::vector<int64_t>& n_end);
  void ensure_seq_blocks(int64_t seq, int64_t n_end);
  Parts through_table(const Parts& pool, const at::Tensor& table_rows, int64_t n) const;
  bool held(int32_t e) const { return e >= 0 && e != pool_->scratch(); }
  int32_t& entry(int64_t seq, int64_t i) {
    return table_[static_cast<size_t>(seq * max_blocks_ + i)];
  }
  LayoutArgs a_;
  int64_t bs_, max_blocks_;
  std::shared_ptr<BlockPool> pool_;
  std::vector<int32_t> table_;  // host copy, [B * max_blocks]
  at::Tensor table_dev_;
};

}  // namespace eli::cache
