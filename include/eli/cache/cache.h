#pragma once
/// Cache<Layout, KCodec, VCodec>: any layout (eli/cache/layout.h says what one is) with any
/// codec for keys and for values (eli/cache/codec.h), as an eli::KVCache. For example
///
///   eli::cache::CacheArgs a;  // shape, batch, capacity, codec args, dtype, device
///   eli::cache::Cache<eli::cache::SlidingWindowLayout, eli::cache::Int8Codec,
///                     eli::cache::Int4Codec> cache(a);
///
/// or, by name, eli::make_cache("sliding_window+k:int8,v:int4", ...) (eli/kv_cache.h); a cache
/// of one's own joins make_cache through eli/cache/registry.h.
///
/// append() keeps the latest append pending at full precision; attend() runs over stored
/// history + pending (the eli::KVCache contract) and then commits the pending tokens into the
/// layout. A decode step (one query) reads the storage in place with the fused kernel
/// (attend_fused: CUDA kernels, or the CPU kernel of the ops) when the layout has
/// decode_regions and both codecs have store(); everything else runs the ATen path
/// (attend_aten: the layout gathers, the codecs decode, one masked softmax).

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eli/cache/attend.h"
#include "eli/cache/codec.h"
#include "eli/cache/layout.h"
#include "eli/cache/quantize.h"
#include "eli/error.h"
#include "eli/kv_cache.h"

namespace eli::cache {

/// Everything a Cache is built from (make_cache fills it from a method name and the configs).
struct CacheArgs {
  ModelShape shape;
  int64_t batch = 1;
  int64_t capacity = 0;  // positions per sequence
  CacheConfig cfg;
  CodecArgs k_codec, v_codec;
  int64_t residual_tokens = 0;  // newest tokens kept unquantized (quantized sides only)
  bool rotate_k = false, rotate_v = false;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  std::map<std::string, int64_t> layout_params;  // a registered layout's key=value parameters
};

template <class Layout, class KCodec, class VCodec>
class Cache final : public KVCache, private Recoder {
  static_assert(check_layout<Layout>(), "Cache<Layout, ...>: Layout is not a layout");
  static_assert(check_codec<KCodec>(), "Cache<..., KCodec, ...>: KCodec is not a codec");
  static_assert(check_codec<VCodec>(), "Cache<..., VCodec>: VCodec is not a codec");
  /// Decode steps read the storage in place (layout regions + codec stores).
  static constexpr bool kFused =
      layout_has_decode_regions<Layout> && codec_has_store<KCodec> && codec_has_store<VCodec>;
  /// ... and may be captured as a CUDA graph.
  static constexpr bool kGraph = kFused && layout_has_graph_step<Layout>;

 public:
  explicit Cache(const CacheArgs& a)
      : a_(a), kc_(a.k_codec), vc_(a.v_codec), layout_(layout_args(a, kc_, vc_)) {
    const size_t nl = static_cast<size_t>(a.shape.n_layer);
    n_.assign(nl, std::vector<int64_t>(static_cast<size_t>(a.batch), 0));
    pt_.resize(nl);
    prow_.resize(nl);
    pk_.resize(nl);
    pv_.resize(nl);
    if (a_.rotate_k || a_.rotate_v) rot_ = quant::hadamard(a_.shape.head_dim, a_.device);
    resid_ = std::min(a_.residual_tokens, a_.capacity);
    if (resid_ > 0 && (KCodec::kQuantized || VCodec::kQuantized)) {
      auto opts = at::TensorOptions().dtype(a_.dtype).device(a_.device);
      for (size_t l = 0; l < nl; ++l) {
        const std::vector<int64_t> sz{a_.batch, a_.shape.n_head, resid_, a_.shape.head_dim};
        rk_.push_back(KCodec::kQuantized ? at::zeros(sz, opts) : at::Tensor());
        rv_.push_back(VCodec::kQuantized ? at::zeros(sz, opts) : at::Tensor());
      }
    } else {
      resid_ = 0;
    }
    // Fused decode: CUDA kernels for this head_dim and dtype, or the CPU kernel (any head_dim;
    // off when a test turns fused_decode_on_cpu off); a residual window only with both sides
    // quantized (one ring per side, same slots) over a layout whose history is a prefix.
    if constexpr (kFused) {
      const int64_t d = a_.shape.head_dim;
      const bool ops_ok = a_.device.is_cuda() ? ops::has_cuda_ops() && (d == 64 || d == 128)
                                              : fused_decode_on_cpu().load();
      if (ops_ok && (a_.dtype == at::kHalf || a_.dtype == at::kFloat) &&
          (resid_ == 0 || (KCodec::kQuantized && VCodec::kQuantized && Layout::kPrefixHistory))) {
        // Row n holds n for every sequence: seq_lens without a per-step host->device copy.
        lens_ = at::arange(a_.capacity + 1, at::TensorOptions().dtype(at::kInt).device(a_.device))
                    .unsqueeze(1)
                    .expand({a_.capacity + 1, a_.batch})
                    .contiguous();
      }
    }
  }

  void append(int layer, const at::Tensor& k, const at::Tensor& v) override {
    append_ragged(layer, k, v, {}, {});
  }

  void append_ragged(int layer, const at::Tensor& k, const at::Tensor& v,
                     const std::vector<int64_t>& new_tokens,
                     const std::vector<int64_t>& seqs) override {
    check_layer(layer);
    const int64_t rows = seqs.empty() ? a_.batch : static_cast<int64_t>(seqs.size());
    check_rows("k", k, rows);
    check_rows("v", v, rows);
    ELI_CHECK(k.sizes() == v.sizes(), "append: k {} and v {} differ in shape", shape_str(k),
              shape_str(v));
    const size_t l = static_cast<size_t>(layer);
    const int64_t t = k.size(2);
    std::vector<int64_t> nt = new_per_seq(t, rows, new_tokens, seqs);
    if (pk_[l].defined()) commit(layer);
    for (size_t b = 0; b < n_[l].size(); ++b) {
      const int64_t add = nt.empty() ? t : nt[b];
      ELI_CHECK(n_[l][b] + add <= a_.capacity,
                "KV cache capacity exceeded: {} stored + {} new > max_tokens {} (layer {}, "
                "sequence {}); raise CacheConfig.max_tokens (<= n_positions)",
                n_[l][b], add, a_.capacity, layer, b);
    }
    if constexpr (!layout_has_ragged<Layout>) {
      ELI_CHECK(nt.empty() && uniform(l),
                "{}: layout {} cannot hold sequences of different lengths (it has no write_seq / "
                "gather_seq; eli/cache/layout.h)",
                name(), layout_.name());
    }
    pt_[l] = std::move(nt);
    prow_[l] = seqs;
    pk_[l] = a_.rotate_k ? rotate(k) : k;
    pv_[l] = a_.rotate_v ? rotate(v) : v;
  }

  at::Tensor attend(int layer, const at::Tensor& q) override {
    check_layer(layer);
    const size_t l = static_cast<size_t>(layer);
    check_rows("q", q, pk_[l].defined() ? pk_[l].size(0) : a_.batch);
    ELI_CHECK(pk_[l].defined(), "attend(layer {}) without a preceding append", layer);
    ELI_CHECK(q.size(2) == pk_[l].size(2), "attend: q has {} positions, the latest append {}",
              q.size(2), pk_[l].size(2));
    // (A graph step reads every per-sequence value from device memory: ragged or not, one path.)
    auto out = !in_graph_step_ && ragged(l) ? attend_ragged(layer, q) : attend_impl(layer, q);
    commit(layer);
    return out;
  }

  CacheStats stats() const override {
    // A pure function of the positions seen (pending included), so it is exact at any time.
    // Per sequence: its positions, pending included. A ragged batch sums what each sequence
    // holds; per-sequence counts are the longest sequence's.
    std::vector<int64_t> seq_n = n_[0];
    for (size_t b = 0; b < seq_n.size(); ++b) seq_n[b] += pending(0, b);
    const int64_t n = *std::max_element(seq_n.begin(), seq_n.end());
    Footprint f = layout_.footprint(n);
    if (!std::all_of(seq_n.begin(), seq_n.end(), [&](int64_t x) { return x == n; })) {
      f.slots_stored = f.padding_slots = f.blocks_in_use = 0;
      for (int64_t x : seq_n) {
        const Footprint fb = layout_.footprint(x);
        f.slots_stored += fb.slots_stored / a_.batch;
        f.padding_slots += fb.padding_slots / a_.batch;
        f.blocks_in_use += fb.blocks_in_use / a_.batch;
      }
    }
    int64_t pay = 0, scl = 0;
    for (const auto& p : kc_.parts()) (p.is_scale ? scl : pay) += p.bytes();
    for (const auto& p : vc_.parts()) (p.is_scale ? scl : pay) += p.bytes();
    const int64_t per_slot = a_.shape.n_layer * a_.shape.n_head;  // (layer, head) pairs
    CacheStats s;
    s.tokens_seen = n;
    s.tokens_stored = f.stored_per_seq;
    s.tokens_evicted = f.evicted_per_seq;
    s.payload_bytes = per_slot * f.slots_stored * pay;
    s.scale_bytes =
        per_slot * f.slots_stored * scl + tensor_scale_bytes(kc_) + tensor_scale_bytes(vc_);
    const int64_t row = a_.shape.head_dim * static_cast<int64_t>(at::elementSize(a_.dtype));
    const int64_t sides = (KCodec::kQuantized ? 1 : 0) + (VCodec::kQuantized ? 1 : 0);
    const int64_t rows_per_tok = resid_ > 0 ? per_slot * a_.batch * sides : 0;
    int64_t held_rows = 0;  // residual ring rows holding a token, over the batch
    for (int64_t x : seq_n) held_rows += std::min(resid_, x);
    s.residual_bytes = resid_ > 0 ? rows_per_tok / a_.batch * held_rows * row : 0;
    s.metadata_bytes = f.metadata_bytes;
    s.padding_bytes = per_slot * f.padding_slots * (pay + scl);
    s.reserved_bytes = per_slot * (f.slots_allocated - f.slots_stored) * (pay + scl) +
                       (resid_ > 0 ? rows_per_tok * resid_ * row - s.residual_bytes : 0);
    s.blocks_in_use = f.blocks_in_use;
    if constexpr (layout_has_prefix_reuse<Layout>) {
      s.blocks_in_use = layout_.held_blocks();  // a shared block once
    }
    s.blocks_total = f.blocks_total;
    return s;
  }

  void reset() override {
    in_graph_step_ = false;
    for (auto& n : n_) std::fill(n.begin(), n.end(), 0);
    for (auto& t : pt_) t.clear();
    for (auto& t : prow_) t.clear();
    for (auto& t : pk_) t = at::Tensor();
    for (auto& t : pv_) t = at::Tensor();
    kc_.reset();
    vc_.reset();
    layout_.reset();
  }

  std::string name() const override {
    std::string n = layout_.name() + "+";
    n += kc_.name() == vc_.name() ? kc_.name() : "k:" + kc_.name() + ",v:" + vc_.name();
    if (resid_ > 0) n += fmt::format("+residual={}", resid_);
    if (a_.rotate_k || a_.rotate_v) n += "+rotate";
    return n;
  }

  bool begin_graph_step(const std::vector<int64_t>& pos) override {
    if constexpr (kGraph) {
      return begin_graph(pos);
    } else {
      (void)pos;
      return false;
    }
  }

  void end_graph_step(const std::vector<int64_t>& pos) override {
    for (auto& n : n_) {
      for (size_t b = 0; b < n.size(); ++b) {
        if (pos[b] >= 0) n[b] = pos[b] + 1;  // an idle sequence (-1) still holds nothing
      }
    }
    for (auto& t : pt_) t.clear();
    for (auto& t : prow_) t.clear();
    for (auto& t : pk_) t = at::Tensor();
    for (auto& t : pv_) t = at::Tensor();
    in_graph_step_ = false;
  }

  bool release(int64_t seq) override {
    ELI_CHECK(seq >= 0 && seq < a_.batch, "release: sequence {} outside the batch of {}", seq,
              a_.batch);
    for (size_t l = 0; l < n_.size(); ++l) {
      ELI_CHECK(!pk_[l].defined(), "release: sequence {} in the middle of a step (layer {})", seq,
                l);
      n_[l][static_cast<size_t>(seq)] = 0;
    }
    if constexpr (layout_has_prefix_reuse<Layout>) layout_.release(seq);
    return true;
  }

  int64_t prefix_block() const override {
    if constexpr (layout_has_prefix_reuse<Layout>) {
      // Per-tensor scales change with the data, and a residual ring would miss the skipped
      // positions: those caches compute every prompt token.
      if (a_.cfg.prefix_reuse && !per_tensor(kc_) && !per_tensor(vc_) && resid_ == 0) {
        return a_.cfg.block_size;
      }
    }
    return 0;
  }

  int64_t reuse_prefix(int64_t seq, const std::vector<int64_t>& tokens) override {
    if constexpr (layout_has_prefix_reuse<Layout>) {
      if (prefix_block() == 0) return 0;
      ELI_CHECK(seq >= 0 && seq < a_.batch, "reuse_prefix: sequence {} outside the batch of {}",
                seq, a_.batch);
      const size_t b = static_cast<size_t>(seq);
      const int64_t have = n_[0][b];
      for (size_t l = 0; l < n_.size(); ++l) {
        ELI_CHECK(n_[l][b] == have && !pk_[l].defined(),
                  "reuse_prefix: sequence {} is in the middle of a step", seq);
      }
      if (have % a_.cfg.block_size != 0) return 0;
      const int64_t now = layout_.reuse_prefix(seq, tokens, have);
      for (auto& n : n_) n[b] = now;
      return now - have;
    } else {
      (void)seq;
      (void)tokens;
      return 0;
    }
  }

  void publish_prefix(int64_t seq, const std::vector<int64_t>& tokens) override {
    if constexpr (layout_has_prefix_reuse<Layout>) {
      if (prefix_block() == 0) return;
      ELI_CHECK(seq >= 0 && seq < a_.batch, "publish_prefix: sequence {} outside the batch of {}",
                seq, a_.batch);
      layout_.publish_prefix(seq, tokens, n_[0][static_cast<size_t>(seq)]);
    } else {
      (void)seq;
      (void)tokens;
    }
  }

  std::shared_ptr<BlockPool> block_pool() const override {
    if constexpr (layout_has_prefix_reuse<Layout>) {
      return layout_.pool();
    } else {
      return nullptr;
    }
  }

  const Layout& layout() const { return layout_; }
  const KCodec& k_codec() const { return kc_; }
  const VCodec& v_codec() const { return vc_; }

 private:
  template <class C>
  static bool per_tensor(const C& c) {
    if constexpr (codec_has_tensor_scale<C>) {
      return c.per_tensor();
    } else {
      return false;
    }
  }
  template <class C>
  static int64_t tensor_scale_bytes(const C& c) {
    if constexpr (codec_has_tensor_scale<C>) {
      return c.tensor_scale_bytes();
    } else {
      return 0;
    }
  }
  // Before committing x: widens a per-layer scale and re-expresses the stored slots under it.
  template <class C>
  void observe(int layer, bool is_v, C& c, const at::Tensor& x) {
    if constexpr (codec_has_tensor_scale<C>) {
      const float old = c.observe(layer, x);
      if (old > 0.0f) {
        layout_.for_each_buffer(layer, is_v, [&](Parts& b) { c.rescale(layer, b, old); });
      }
    }
  }

  bool begin_graph(const std::vector<int64_t>& pos) {
    // Per-tensor codecs widen their scale from the data (a host read); other steps of layouts
    // that restructure (chunk pooling) say so through graph_step_ok.
    if (!lens_.defined() || !a_.device.is_cuda() || per_tensor(kc_) || per_tensor(vc_) ||
        !fused_decode_enabled().load(std::memory_order_relaxed) ||
        static_cast<int64_t>(pos.size()) != a_.batch) {
      return false;
    }
    // pos[b] == -1: sequence b holds nothing and sits the step out (its row reads nothing and
    // writes where nothing is kept: its empty slot 0, the paged layout's scratch block).
    for (size_t b = 0; b < pos.size(); ++b) {
      const int64_t p = std::max<int64_t>(pos[b], 0), want = pos[b] < 0 ? 0 : pos[b];
      if (pos[b] < -1 || p + 1 > a_.capacity || !layout_.graph_step_ok(p)) return false;
      for (size_t l = 0; l < n_.size(); ++l) {
        if (n_[l][b] != want || pk_[l].defined()) return false;
      }
    }
    std::vector<int64_t> hist(pos.size());
    for (size_t b = 0; b < pos.size(); ++b) hist[b] = std::max<int64_t>(pos[b] - resid_, 0);
    layout_.graph_prepare(hist, pos);
    if (!step_.defined()) {
      step_ =
          at::zeros({kStepRows, a_.batch}, at::TensorOptions().dtype(at::kInt).device(a_.device));
    }
    std::vector<int32_t> host(static_cast<size_t>(kStepRows * a_.batch), 0);
    auto set = [&](int64_t row, size_t b, int64_t value) {
      host[static_cast<size_t>(row * a_.batch) + b] = static_cast<int32_t>(value);
    };
    for (size_t b = 0; b < pos.size(); ++b) {
      const std::vector<int64_t> lens = layout_.graph_lens(hist[b]);
      ELI_CHECK(lens.size() <= kResidLenRow, "layout has {} graph regions (at most {})",
                lens.size(), kResidLenRow);
      const int64_t p = std::max<int64_t>(pos[b], 0);
      for (size_t i = 0; i < lens.size(); ++i) set(static_cast<int64_t>(i), b, lens[i]);
      set(kResidLenRow, b, std::min(p, resid_));
      set(kSlotRow, b, layout_.graph_slot(p));
      if (resid_ > 0) set(kResidSlotRow, b, p % resid_);
    }
    upload(step_, host.data(), step_.numel());
    in_graph_step_ = true;
    return true;
  }

  static LayoutArgs layout_args(const CacheArgs& a, const KCodec& kc, const VCodec& vc) {
    return LayoutArgs{a.shape,    a.batch,    a.capacity, a.cfg,
                      kc.parts(), vc.parts(), a.device,   a.layout_params};
  }

  // New positions per sequence of an append of t positions in `rows` rows (0 for sequences
  // without a row); empty when every sequence gets all t (a plain append: no allocation).
  std::vector<int64_t> new_per_seq(int64_t t, int64_t rows, const std::vector<int64_t>& new_tokens,
                                   const std::vector<int64_t>& seqs) const {
    if (new_tokens.empty() && seqs.empty()) return {};
    ELI_CHECK(new_tokens.empty() || static_cast<int64_t>(new_tokens.size()) == rows,
              "append: {} new-token counts for {} rows", new_tokens.size(), rows);
    std::vector<bool> seen(static_cast<size_t>(a_.batch), false);
    for (int64_t s : seqs) {
      ELI_CHECK(s >= 0 && s < a_.batch && !seen[static_cast<size_t>(s)],
                "append: sequence {} is outside the batch of {} or appears twice", s, a_.batch);
      seen[static_cast<size_t>(s)] = true;
    }
    std::vector<int64_t> nt(static_cast<size_t>(a_.batch), seqs.empty() ? t : 0);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t n = new_tokens.empty() ? t : new_tokens[static_cast<size_t>(i)];
      ELI_CHECK(n >= 0 && n <= t,
                "append: row {} has {} new tokens, outside [0, {}] (the append's length)", i, n, t);
      nt[static_cast<size_t>(seqs.empty() ? i : seqs[static_cast<size_t>(i)])] = n;
    }
    if (seqs.empty() && std::all_of(nt.begin(), nt.end(), [&](int64_t x) { return x == t; })) {
      nt.clear();
    }
    return nt;
  }

  // Positions of sequence b in the pending append of layer l.
  int64_t pending(size_t l, size_t b) const {
    if (!pk_[l].defined()) return 0;
    return pt_[l].empty() ? pk_[l].size(2) : pt_[l][b];
  }
  // Whether every sequence of layer l holds the same number of positions.
  bool uniform(size_t l) const {
    const auto& n = n_[l];
    return std::all_of(n.begin(), n.end(), [&](int64_t x) { return x == n[0]; });
  }
  // Whether layer l's pending append is ragged or lands on sequences of different lengths.
  bool ragged(size_t l) const { return !pt_[l].empty() || !uniform(l); }
  // The sequence of row i of layer l's pending append.
  int64_t row_seq(size_t l, int64_t i) const {
    return prow_[l].empty() ? i : prow_[l][static_cast<size_t>(i)];
  }

  at::Tensor attend_impl(int layer, const at::Tensor& q) {
    const size_t l = static_cast<size_t>(layer);
    if constexpr (kFused) {
      if constexpr (kGraph) {
        if (in_graph_step_) return attend_graph(layer, q);
      }
      if (fused_ok(q)) return attend_fused(layer, q, pk_[l], pv_[l], n_[l][0], -1);
    }
    return attend_aten(layer, q, pk_[l], pv_[l], n_[l][0], -1);
  }

  bool fused_ok(const at::Tensor& q) const {
    return q.size(2) == 1 && lens_.defined() && q.scalar_type() == a_.dtype &&
           fused_decode_enabled().load(std::memory_order_relaxed);
  }

  // A ragged batch: each sequence attends alone over its own history (the path a batch of one
  // takes, so its output is the one it has alone); padded queries get zeros.
  at::Tensor attend_ragged(int layer, const at::Tensor& q) {
    const size_t l = static_cast<size_t>(layer);
    const int64_t t = q.size(2);
    std::vector<at::Tensor> rows;
    for (int64_t i = 0; i < q.size(0); ++i) {
      const int64_t b = row_seq(l, i);
      const int64_t tb = pending(l, static_cast<size_t>(b));
      at::Tensor o = at::zeros({1, q.size(1), t, q.size(3)}, q.options().dtype(a_.dtype));
      if (tb > 0) {
        auto rows_of = [&](const at::Tensor& x) { return x.narrow(0, i, 1).narrow(2, 0, tb); };
        const at::Tensor qb = rows_of(q), kb = rows_of(pk_[l]), vb = rows_of(pv_[l]);
        const int64_t n = n_[l][static_cast<size_t>(b)];
        at::Tensor ob;
        if constexpr (kFused) {
          if (fused_ok(qb)) ob = attend_fused(layer, qb.contiguous(), kb, vb, n, b);
        }
        if (!ob.defined()) ob = attend_aten(layer, qb, kb, vb, n, b);
        if (tb == t) {
          o = ob;
        } else {
          o.narrow(2, 0, tb).copy_(ob);
        }
      }
      rows.push_back(o);
    }
    return at::cat(rows, 0);
  }

  // Decode step: the layout's regions (codes, scales, block table as stored) and the
  // residual ring through ops::decode_attention, the pending token at full precision. n:
  // positions stored; seq >= 0: q, k_new, v_new are sequence seq's rows alone.
  at::Tensor attend_fused(int layer, const at::Tensor& q, const at::Tensor& k_new,
                          const at::Tensor& v_new, int64_t n, int64_t seq) {
    const size_t l = static_cast<size_t>(layer);
    const int64_t hist = std::max<int64_t>(n - resid_, 0);  // positions read from the layout
    std::vector<DecodeRegion> regions;
    if (hist > 0) {
      for (SlotRegion r : layout_.decode_regions(layer, hist)) {
        if (r.len <= 0) continue;
        if (seq >= 0) r = seq_region(r, seq);
        regions.push_back(DecodeRegion{kc_.store(layer, r.k), vc_.store(layer, r.v), r.block_table,
                                       r.bias, r.len});
      }
    }
    if (resid_ > 0 && n > 0) {  // positions [n - resid, n) at ring slots p % resid
      const at::Tensor rk = seq >= 0 ? rk_[l].narrow(0, seq, 1) : rk_[l];
      const at::Tensor rv = seq >= 0 ? rv_[l].narrow(0, seq, 1) : rv_[l];
      regions.push_back(
          DecodeRegion{ops::KvStore::fp(rk), ops::KvStore::fp(rv), {}, {}, std::min(n, resid_)});
    }
    const at::Tensor qq = a_.rotate_k ? rotate(q).to(q.scalar_type()) : q;
    const at::Tensor lens = seq >= 0 ? lens_.narrow(1, seq, 1) : lens_;
    auto out = attend_regions(qq, regions, lens, k_new, v_new);
    if (a_.rotate_v) out = at::matmul(out.to(at::kFloat), rot_);  // H symmetric, orthonormal
    fused_decode_steps().fetch_add(1, std::memory_order_relaxed);
    return out.to(a_.dtype);
  }

  // Sequence seq's rows of a region: its row of the block table (the pool is shared) or of the
  // storage, and of the bias.
  static SlotRegion seq_region(SlotRegion r, int64_t seq) {
    if (r.block_table.defined()) {
      r.block_table = r.block_table.narrow(0, seq, 1);
    } else {
      r.k = seq_rows(r.k, seq);
      r.v = seq_rows(r.v, seq);
    }
    if (r.bias.defined()) r.bias = r.bias.narrow(0, seq, 1);
    return r;
  }

  // The graph step: attend_fused's regions with a fixed structure (every region present, its
  // grid sized for the capacity) and the lengths read from step_. Empty regions merge with
  // weight exactly 0 and the split length is planned for the capacity in both, so the result
  // equals attend_fused's bit for bit.
  at::Tensor attend_graph(int layer, const at::Tensor& q) {
    const size_t l = static_cast<size_t>(layer);
    std::vector<DecodeRegion> regions;
    int64_t row = 0;
    for (const SlotRegion& r : layout_.graph_regions(layer)) {
      regions.push_back(DecodeRegion{kc_.store(layer, r.k), vc_.store(layer, r.v), r.block_table,
                                     r.bias, r.len, step_.select(0, row++)});
    }
    if (resid_ > 0) {
      regions.push_back(DecodeRegion{ops::KvStore::fp(rk_[l]),
                                     ops::KvStore::fp(rv_[l]),
                                     {},
                                     {},
                                     resid_,
                                     step_.select(0, kResidLenRow)});
    }
    const at::Tensor qq = a_.rotate_k ? rotate(q).to(q.scalar_type()) : q;
    // Without a residual ring or rotation, the attention's last launch, over the layout's last
    // region, also appends the new token there (quantized as quantize_kv_out would), so
    // commit_graph has nothing left to write.
    ops::SlotMap append;
    if (appends_in_attention()) {
      append.block_table = regions.back().block_table;
      append.t0_dev = step_.select(0, kSlotRow);
    }
    auto out = attend_regions(qq, regions, lens_, pk_[l], pv_[l],
                              appends_in_attention() ? &append : nullptr);
    if (a_.rotate_v) out = at::matmul(out.to(at::kFloat), rot_);
    return out.to(a_.dtype);
  }

  // Graph step without a residual ring (its region comes last), unrotated K and V, both sides
  // quantized or neither: the attention's reduce stores the new token, quantizing it for a
  // quantized codec.
  bool appends_in_attention() const {
    return resid_ == 0 && !a_.rotate_k && !a_.rotate_v && KCodec::kQuantized == VCodec::kQuantized;
  }

  // The graph step's append: the new token quantized (or stored) straight into the layout's
  // slot and the residual ring's, both read from step_.
  void commit_graph(int layer) {
    const size_t l = static_cast<size_t>(layer);
    const at::Tensor xk = pk_[l], xv = pv_[l];
    pk_[l] = at::Tensor();
    pv_[l] = at::Tensor();
    if (!appends_in_attention()) {
      const SlotRegion t = layout_.graph_regions(layer).back();  // where new positions go
      ops::SlotMap m;
      m.block_table = t.block_table;
      m.t0_dev = step_.select(0, kSlotRow);
      // K and V in one launch when their stores are of one kind (quantize_kv_pair_out).
      ops::quantize_kv_pair_out(KCodec::kQuantized ? xk : xk.to(a_.dtype), kc_.store(layer, t.k),
                                VCodec::kQuantized ? xv : xv.to(a_.dtype), vc_.store(layer, t.v),
                                m);
    }
    if (resid_ > 0) {
      ops::SlotMap r;
      r.t0_dev = step_.select(0, kResidSlotRow);
      if (KCodec::kQuantized && VCodec::kQuantized) {
        ops::quantize_kv_pair_out(xk.to(a_.dtype), ops::KvStore::fp(rk_[l]), xv.to(a_.dtype),
                                  ops::KvStore::fp(rv_[l]), r);
      } else {
        if (KCodec::kQuantized) ops::quantize_kv_out(xk.to(a_.dtype), ops::KvStore::fp(rk_[l]), r);
        if (VCodec::kQuantized) ops::quantize_kv_out(xv.to(a_.dtype), ops::KvStore::fp(rv_[l]), r);
      }
    }
    // (end_graph_step sets the positions held: an idle row's stay 0.)
  }

  // The ATen path: the stored history gathered and decoded, one masked softmax. n: positions
  // stored; seq >= 0: q, k_new, v_new are sequence seq's rows alone.
  at::Tensor attend_aten(int layer, const at::Tensor& q, const at::Tensor& k_new,
                         const at::Tensor& v_new, int64_t n, int64_t seq) {
    Gathered g;
    if constexpr (layout_has_ragged<Layout>) {
      g = seq >= 0 ? layout_.gather_seq(seq, layer, n) : layout_.gather(layer, n);
    } else {
      g = layout_.gather(layer, n);
    }
    at::Tensor kh, vh;
    if (g.size() > 0) {
      kh = kc_.decode(layer, g.k);
      vh = vc_.decode(layer, g.v);
      overlay_residual(layer, g.pos, n, seq, kh, vh);
    }
    AttendMask m{n, layout_.window(), layout_.sinks()};
    auto out = attend_history(a_.rotate_k ? rotate(q) : q, kh, vh, g.pos, g.bias, k_new, v_new, m);
    if (a_.rotate_v) out = at::matmul(out, rot_);  // H is symmetric and orthonormal
    return out.to(a_.dtype);
  }

  // The newest resid_ stored positions are read from full-precision copies instead of codes.
  void overlay_residual(int layer, const std::vector<int64_t>& pos, int64_t n, int64_t seq,
                        at::Tensor& kh, at::Tensor& vh) const {
    if (resid_ == 0) return;
    std::vector<int64_t> dst, src;
    for (size_t j = 0; j < pos.size(); ++j) {
      if (pos[j] >= 0 && pos[j] >= n - resid_) {
        dst.push_back(static_cast<int64_t>(j));
        src.push_back(pos[j] % resid_);
      }
    }
    if (dst.empty()) return;
    auto opts = at::TensorOptions().dtype(at::kLong);
    auto d = at::tensor(dst, opts).to(a_.device), s = at::tensor(src, opts).to(a_.device);
    const size_t l = static_cast<size_t>(layer);
    auto ring = [&](const at::Tensor& r) { return seq >= 0 ? r.narrow(0, seq, 1) : r; };
    if (KCodec::kQuantized) kh.index_copy_(2, d, ring(rk_[l]).index_select(2, s).to(at::kFloat));
    if (VCodec::kQuantized) vh.index_copy_(2, d, ring(rv_[l]).index_select(2, s).to(at::kFloat));
  }

  void commit(int layer) {
    if constexpr (kGraph) {
      if (in_graph_step_) return commit_graph(layer);
    }
    const size_t l = static_cast<size_t>(layer);
    const at::Tensor xk = pk_[l], xv = pv_[l];
    const bool rag = ragged(l);
    const std::vector<int64_t> nt = std::move(pt_[l]), rows = std::move(prow_[l]);
    pk_[l] = at::Tensor();
    pv_[l] = at::Tensor();
    pt_[l].clear();
    prow_[l].clear();
    if (!rag) {
      commit_rows(layer, -1, n_[l][0], xk, xv);
      for (auto& n : n_[l]) n += xk.size(2);
      return;
    }
    if constexpr (layout_has_ragged<Layout>) {
      for (int64_t i = 0; i < xk.size(0); ++i) {
        const int64_t b = rows.empty() ? i : rows[static_cast<size_t>(i)];
        const int64_t tb = nt.empty() ? xk.size(2) : nt[static_cast<size_t>(b)];
        if (tb == 0) continue;
        int64_t& n = n_[l][static_cast<size_t>(b)];
        commit_rows(layer, b, n, xk.narrow(0, i, 1).narrow(2, 0, tb),
                    xv.narrow(0, i, 1).narrow(2, 0, tb));
        n += tb;
      }
    }
  }

  // Stores rows xk, xv [B or 1, H, T, D] at positions [n, n + T) (seq >= 0: sequence seq's).
  void commit_rows(int layer, int64_t seq, int64_t n, const at::Tensor& xk, const at::Tensor& xv) {
    const size_t l = static_cast<size_t>(layer);
    observe(layer, false, kc_, xk);
    observe(layer, true, vc_, xv);
    const WriteArgs w{layer, n, kc_.encode(layer, xk), vc_.encode(layer, xv), xk, xv, this};
    if (seq < 0) {
      layout_.write(w);
    } else if constexpr (layout_has_ragged<Layout>) {
      layout_.write_seq(seq, w);
    }
    if (resid_ > 0) {
      // Positions [n + t - keep, n + t) into ring slots p % resid: at most two runs of slots.
      const at::Tensor rk = seq >= 0 && rk_[l].defined() ? rk_[l].narrow(0, seq, 1) : rk_[l];
      const at::Tensor rv = seq >= 0 && rv_[l].defined() ? rv_[l].narrow(0, seq, 1) : rv_[l];
      const int64_t t = xk.size(2), keep = std::min(t, resid_);
      for (int64_t done = 0; done < keep;) {
        const int64_t p = n + t - keep + done, slot = p % resid_;
        const int64_t run = std::min(keep - done, resid_ - slot);
        const int64_t src = t - keep + done;
        if (KCodec::kQuantized) rk.narrow(2, slot, run).copy_(xk.narrow(2, src, run));
        if (VCodec::kQuantized) rv.narrow(2, slot, run).copy_(xv.narrow(2, src, run));
        done += run;
      }
    }
  }

  Parts encode_rows(int layer, bool is_v, const at::Tensor& x) override {
    return is_v ? vc_.encode(layer, x) : kc_.encode(layer, x);
  }
  at::Tensor decode_rows(int layer, bool is_v, const Parts& p) override {
    return is_v ? vc_.decode(layer, p) : kc_.decode(layer, p);
  }

  at::Tensor rotate(const at::Tensor& x) const { return at::matmul(x.to(at::kFloat), rot_); }

  static std::string shape_str(const at::Tensor& x) {
    std::string s = "[";
    for (int64_t i = 0; i < x.dim(); ++i) s += (i ? ", " : "") + std::to_string(x.size(i));
    return s + "]";
  }
  void check_layer(int layer) const {
    ELI_CHECK(layer >= 0 && layer < a_.shape.n_layer, "layer {} out of range [0, {})", layer,
              a_.shape.n_layer);
  }
  void check_rows(const char* what, const at::Tensor& x, int64_t rows) const {
    ELI_CHECK(x.dim() == 4 && x.size(0) == rows && x.size(1) == a_.shape.n_head &&
                  x.size(3) == a_.shape.head_dim && x.size(2) >= 1,
              "{}: expected [B={}, H={}, T>=1, D={}], got {}", what, rows, a_.shape.n_head,
              a_.shape.head_dim, shape_str(x));
    ELI_CHECK(x.device().type() == a_.device.type() &&
                  (!a_.device.has_index() || x.device().index() == a_.device.index()),
              "{} is on {}, the cache on {}", what, x.device().str(), a_.device.str());
  }

  CacheArgs a_;
  KCodec kc_;
  VCodec vc_;
  Layout layout_;
  std::vector<std::vector<int64_t>> n_;     // positions committed per layer and sequence
  std::vector<std::vector<int64_t>> pt_;    // per layer: the pending append's positions per
                                            // sequence (ragged), empty = all of them
  std::vector<std::vector<int64_t>> prow_;  // per layer: the sequence of each pending row,
                                            // empty = row b is sequence b
  std::vector<at::Tensor> pk_, pv_;         // latest append per layer (rotated when asked)
  at::Tensor rot_;
  int64_t resid_ = 0;
  std::vector<at::Tensor> rk_, rv_;  // residual rings [B, H, resid, D], model dtype
  at::Tensor lens_;  // fused decode only: int32 [capacity + 1, B] on the device, row n = n
  // Graph step: int32 [kStepRows, B] on the device, uploaded by begin_graph_step: rows
  // 0 .. kResidLenRow - 1 the layout's graph_lens, then the residual ring's length, the write
  // slot (layout_.graph_slot) and the residual ring slot.
  static constexpr int64_t kResidLenRow = 4, kSlotRow = 5, kResidSlotRow = 6, kStepRows = 7;
  at::Tensor step_;
  bool in_graph_step_ = false;  // between begin_graph_step and end_graph_step
};

}  // namespace eli::cache
