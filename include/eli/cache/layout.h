#pragma once
/// What a layout is: where a cache keeps token slots and which ones it keeps. A layout stores
/// the parts a codec produced (eli/cache/codec.h) per layer, for K and V, and gathers the
/// stored history back in attention order. Layouts are the first template argument of
/// Cache<Layout, KCodec, VCodec> (eli/cache/cache.h). The built-in ones: ContiguousLayout
/// (contiguous.h), SlidingWindowLayout (sliding_window.h), PagedLayout (paged.h),
/// ChunkedLayout (chunked.h). This file also holds the helpers they share.
///
/// A layout L provides (checked by check_layout<L>() when a Cache is instantiated):
///
///   explicit L(const LayoutArgs&);
///   std::string name() const;            its spec, e.g. "sliding(window=256)"
///   void write(const WriteArgs& w);
///       stores positions [w.pos0, w.pos0 + T) of layer w.layer: w.k, w.v are the codec parts
///       [B, H, T, width] of the new rows (a layout that derives rows of its own, as the chunk
///       summaries, also reads w.xk, w.xv and w.recoder; see WriteArgs)
///   Gathered gather(int layer, int64_t n) const;
///       the stored history once n positions were written, in attention order
///   void for_each_buffer(int layer, bool is_v, const std::function<void(Parts&)>& fn);
///       calls fn on every storage buffer of a layer and side (per_tensor rescaling)
///   Footprint footprint(int64_t n) const; slot counts after n positions (CacheStats)
///   int64_t window() const; int64_t sinks() const;
///       the attention mask: key j visible to query p iff window == 0, j < sinks or
///       p - j < window
///   void reset();                        back to the state after construction
///
/// and optionally, for the fused decode path (without them every step runs gather + ATen):
///
///   std::vector<SlotRegion> decode_regions(int layer, int64_t n) const;
///       the history a decode query at position n sees, as storage read in place
///   static constexpr bool kPrefixHistory;
///       decode_regions(layer, m), m <= n, gives exactly positions [0, m) (residual=N needs it)
///
/// and, with those, for the CUDA-graph step (Cache::begin_graph_step), where every per-step
/// value comes from device memory so that one captured step replays at any position:
///
///   bool graph_step_ok(int64_t pos) const;  whether the single-token step at pos can replay
///   std::vector<SlotRegion> graph_regions(int layer) const;
///       decode_regions with a fixed structure: len = the region's capacity (grid bound), masks
///       in device buffers of their own; the last region is where new positions are written
///   std::vector<int64_t> graph_lens(int64_t n) const;  per graph region, the slots read at n
///   int64_t graph_slot(int64_t pos) const;   where pos is written in the last graph region
///   void graph_prepare(const std::vector<int64_t>& n, const std::vector<int64_t>& pos);
///       uploads the per-step device state; n, pos per sequence (graph_lens(n[b]) read, pos[b]
///       written)
///
/// and, for ragged batches (sequences of different lengths; without them a Cache refuses a
/// ragged append with an eli::Error naming the layout):
///
///   void write_seq(int64_t seq, const WriteArgs& w);
///       write() for sequence `seq` alone: its rows [1, H, T, ...] at its positions
///       [w.pos0, w.pos0 + T)
///   Gathered gather_seq(int64_t seq, int layer, int64_t n) const;
///       gather() for sequence `seq` alone, n positions written: parts [1, H, S, width]
///
/// Every read above (gather, decode_regions, graph_lens, footprint) is a function of the
/// positions written, so a sequence's rows of a batch read at its own n are its history.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "eli/cache/attend.h"
#include "eli/cache/codec.h"
#include "eli/config.h"
#include "eli/model_config.h"

namespace eli::cache {

struct LayoutArgs {
  ModelShape shape;
  int64_t batch = 1;
  int64_t capacity = 0;  // positions per sequence
  CacheConfig cfg;
  std::vector<PartSpec> k_parts, v_parts;
  at::Device device = at::kCPU;
  /// A registered layout's spec parameters (key=value), by key; built-in layouts read cfg.
  std::map<std::string, int64_t> params;
};

/// Stored history in attention order: parts [B, H, S, width] plus, per slot, its absolute
/// position (-1 for a summary) and an additive logit bias (log count of a summary, else 0).
struct Gathered {
  Parts k, v;
  std::vector<int64_t> pos;
  std::vector<float> bias;
  int64_t size() const { return static_cast<int64_t>(pos.size()); }
};

/// Storage buffers of one layer (K and V parts [N, H, S, w]) of which slots 0 .. len - 1 are
/// read by a decode query (the fused path, eli/cache/attend.h); bias (kMaskedLogit for slots
/// not visible) and block table as in Region.
using SlotRegion = Region<Parts>;

/// Slot counts of a layout after n positions (totals over the batch unless noted).
struct Footprint {
  int64_t stored_per_seq = 0;   // slots holding a token or summary, per sequence
  int64_t evicted_per_seq = 0;  // positions dropped or pooled, per sequence
  int64_t slots_stored = 0;     // batch total
  int64_t slots_allocated = 0;  // batch total (incl. free blocks, empty ring slots)
  int64_t padding_slots = 0;    // paged: unused slots of partly filled blocks
  int64_t blocks_in_use = 0;
  int64_t blocks_total = 0;
  int64_t metadata_bytes = 0;  // block tables
};

/// The codec side a layout may call back into (chunk summaries are re-encoded means).
class Recoder {
 public:
  virtual ~Recoder() = default;
  virtual Parts encode_rows(int layer, bool is_v, const at::Tensor& x) = 0;
  virtual at::Tensor decode_rows(int layer, bool is_v, const Parts& p) = 0;
};

/// One write into a layout: the new rows of layer `layer` at positions [pos0, pos0 + T), for
/// every sequence of the batch (write, rows [B, H, T, ..]) or for one (write_seq, [1, H, T, ..]).
struct WriteArgs {
  int layer = 0;
  int64_t pos0 = 0;
  Parts k, v;  // the codecs' parts of the new rows, [B or 1, H, T, width] each: what is stored
  /// Only for a layout that stores rows it derives itself (ChunkedLayout pools old chunks into
  /// means): the new rows at full precision, fp32 or model dtype [B or 1, H, T, D], and the
  /// codecs, to decode stored slots and encode the derived rows. Other layouts ignore them.
  at::Tensor xk, xv;
  Recoder* recoder = nullptr;
};

/// Per-layer storage buffers for K and V: buffer i of layer l is [n0, H, slots, width_i].
struct SlotBuffers {
  std::vector<Parts> k, v;
  void allocate(const LayoutArgs& a, int64_t n0, int64_t slots);
  Parts& side(int layer, bool is_v) { return is_v ? v[layer] : k[layer]; }
};

/// Copies `count` elements at `host` into the same-sized device (or CPU) tensor `dst` in place:
/// through pinned memory and asynchronously on the current stream for CUDA, so the copy is
/// ordered before the next kernel and never synchronizes (the pinned block is not reused before
/// the copy ran).
void upload(at::Tensor& dst, const void* host, int64_t count);

/// Writes src parts [B, H, T, w] (selected tokens `src_idx` of T) into buf slots `dst_idx`.
void write_slots(Parts& buf, const Parts& src, const std::vector<int64_t>& src_idx,
                 const std::vector<int64_t>& dst_idx);
/// Rows [b0, b0 + nb) (dim 0) of every part: views, writes go through to `p`.
Parts seq_rows(const Parts& p, int64_t b0, int64_t nb = 1);
/// begin, begin + 1, ..., end - 1.
std::vector<int64_t> iota(int64_t begin, int64_t end);
/// Selects slots `idx` of buf [B, H, slots, w] -> [B, H, |idx|, w] (a view for a range).
Parts read_slots(const Parts& buf, const std::vector<int64_t>& idx);

namespace detail {

template <class L>
using layout_name_t = decltype(std::declval<const L&>().name());
template <class L>
using layout_write_t = decltype(std::declval<L&>().write(std::declval<const WriteArgs&>()));
template <class L>
using layout_gather_t = decltype(std::declval<const L&>().gather(0, int64_t{}));
template <class L>
using layout_for_each_t = decltype(std::declval<L&>().for_each_buffer(
    0, false, std::declval<const std::function<void(Parts&)>&>()));
template <class L>
using layout_footprint_t = decltype(std::declval<const L&>().footprint(int64_t{}));
template <class L>
using layout_window_t = decltype(std::declval<const L&>().window());
template <class L>
using layout_sinks_t = decltype(std::declval<const L&>().sinks());
template <class L>
using layout_reset_t = decltype(std::declval<L&>().reset());
template <class L>
using layout_decode_regions_t = decltype(std::declval<const L&>().decode_regions(0, int64_t{}));
template <class L>
using layout_prefix_t = decltype(L::kPrefixHistory);
template <class L>
using layout_graph_ok_t = decltype(std::declval<const L&>().graph_step_ok(int64_t{}));
template <class L>
using layout_graph_regions_t = decltype(std::declval<const L&>().graph_regions(0));
template <class L>
using layout_graph_lens_t = decltype(std::declval<const L&>().graph_lens(int64_t{}));
template <class L>
using layout_graph_slot_t = decltype(std::declval<const L&>().graph_slot(int64_t{}));
template <class L>
using layout_graph_prepare_t = decltype(std::declval<L&>().graph_prepare(
    std::declval<const std::vector<int64_t>&>(), std::declval<const std::vector<int64_t>&>()));
template <class L>
using layout_write_seq_t =
    decltype(std::declval<L&>().write_seq(int64_t{}, std::declval<const WriteArgs&>()));
template <class L>
using layout_reuse_prefix_t = decltype(std::declval<L&>().reuse_prefix(
    int64_t{}, std::declval<const std::vector<int64_t>&>(), int64_t{}));
template <class L>
using layout_gather_seq_t = decltype(std::declval<const L&>().gather_seq(int64_t{}, 0, int64_t{}));

}  // namespace detail

/// Whether layout L offers the fused decode path (decode_regions and kPrefixHistory).
template <class L>
constexpr bool layout_has_decode_regions =
    detail::returns<L, detail::layout_decode_regions_t, std::vector<SlotRegion>>::value&&
        detail::returns<L, detail::layout_prefix_t, bool>::value;
/// Whether layout L offers the CUDA-graph step (every graph_* member, and the fused path).
template <class L>
constexpr bool layout_has_graph_step =
    layout_has_decode_regions<L>&& detail::returns<L, detail::layout_graph_ok_t, bool>::value&&
        detail::returns<L, detail::layout_graph_regions_t, std::vector<SlotRegion>>::value&&
            detail::returns<L, detail::layout_graph_lens_t, std::vector<int64_t>>::value&&
                detail::returns<L, detail::layout_graph_slot_t, int64_t>::value&&
                    detail::detected<L, detail::layout_graph_prepare_t>::value;

/// Whether layout L holds ragged batches (write_seq and gather_seq).
template <class L>
constexpr bool layout_has_ragged = detail::detected<L, detail::layout_write_seq_t>::value&&
    detail::returns<L, detail::layout_gather_seq_t, Gathered>::value;

/// Whether layout L shares prefix blocks (the paged layout: reuse_prefix, publish_prefix,
/// held_blocks, pool).
template <class L>
constexpr bool layout_has_prefix_reuse =
    detail::returns<L, detail::layout_reuse_prefix_t, int64_t>::value;

/// Compile-time check that L is a layout (see the top of this file); each missing member fails
/// with a message naming it.
template <class L>
constexpr bool check_layout() {
  static_assert(std::is_constructible_v<L, const LayoutArgs&>,
                "layout: needs a constructor L(const LayoutArgs&)");
  static_assert(detail::returns<L, detail::layout_name_t, std::string>::value,
                "layout: needs `std::string name() const`");
  static_assert(detail::detected<L, detail::layout_write_t>::value,
                "layout: needs `void write(const WriteArgs& w)`");
  static_assert(detail::returns<L, detail::layout_gather_t, Gathered>::value,
                "layout: needs `Gathered gather(int layer, int64_t n) const`");
  static_assert(detail::detected<L, detail::layout_for_each_t>::value,
                "layout: needs `void for_each_buffer(int layer, bool is_v, const "
                "std::function<void(Parts&)>& fn)`");
  static_assert(detail::returns<L, detail::layout_footprint_t, Footprint>::value,
                "layout: needs `Footprint footprint(int64_t n) const`");
  static_assert(detail::returns<L, detail::layout_window_t, int64_t>::value &&
                    detail::returns<L, detail::layout_sinks_t, int64_t>::value,
                "layout: needs `int64_t window() const` and `int64_t sinks() const`");
  static_assert(detail::detected<L, detail::layout_reset_t>::value, "layout: needs `void reset()`");
  static_assert(
      !detail::detected<L, detail::layout_decode_regions_t>::value || layout_has_decode_regions<L>,
      "layout: decode_regions() needs `static constexpr bool kPrefixHistory` and must "
      "return std::vector<SlotRegion>");
  static_assert(
      !detail::detected<L, detail::layout_graph_regions_t>::value || layout_has_graph_step<L>,
      "layout: graph_regions() needs decode_regions(), graph_step_ok(), graph_lens(), "
      "graph_slot() and graph_prepare() as well");
  static_assert(!detail::detected<L, detail::layout_write_seq_t>::value || layout_has_ragged<L>,
                "layout: write_seq() needs `Gathered gather_seq(int64_t seq, int layer, int64_t n) "
                "const` as well");
  return true;
}

}  // namespace eli::cache
