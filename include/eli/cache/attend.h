#pragma once
/// The attention a Cache runs (eli/cache/cache.h): attend_history, the ATen path used when no
/// fused kernel applies (queries of the latest append against the stored history as decoded
/// plus the latest append, causally, with the layout's mask and per-slot logit bias; scale
/// 1/sqrt(D), softmax in fp32), and attend_regions, the fused decode step that reads the
/// storage in place through the ops (eli/ops.h).

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "eli/ops.h"

namespace eli::cache {

struct AttendMask {
  int64_t q_pos0 = 0;  // absolute position of query 0 (= positions stored before the append)
  int64_t window = 0;  // > 0: key j visible to query p only if p - j < window ...
  int64_t sinks = 0;   // ... or j < sinks
};

/// Bytes of fp32 scores per sequence that attend_history holds at once by default: prompts
/// longer than that run in blocks of query rows. On the CPU 16 MiB, blocks that stay in the
/// caches (one layer of a 2048-token prompt at the 124M shape, batch 1, ran 2.6-3.1x faster
/// than in one block: bench_caches prompt_attention); on a GPU 32 MiB (1 GiB at batch 32), so
/// that a block's products stay large.
constexpr int64_t kAttendScoreBytesCpu = int64_t(16) << 20;
constexpr int64_t kAttendScoreBytesGpu = int64_t(32) << 20;

/// q, k_new, v_new: [B, H, T, D] (any float dtype); k_hist, v_hist: [B, H, S, D] fp32 (S may be
/// 0); hist_pos[S]: absolute position per history slot (-1 = summary, never masked);
/// hist_bias[S]: additive logit bias. Returns fp32 [B, H, T, D].
/// The queries run in blocks of rows whose scores [H, rows, keys] per sequence fit
/// score_bytes_per_seq (0: the device's default above; at least one row a block; the blocks do
/// not depend on the batch, so neither do a sequence's results); a block reads the keys up to
/// its last query's own (the later new keys are masked for all of its rows), so a prompt of T
/// tokens computes about half of the T x T scores. A single block (decode steps, prompts within
/// the budget) is one masked softmax over every key.
at::Tensor attend_history(const at::Tensor& q, const at::Tensor& k_hist, const at::Tensor& v_hist,
                          const std::vector<int64_t>& hist_pos, const std::vector<float>& hist_bias,
                          const at::Tensor& k_new, const at::Tensor& v_new, const AttendMask& mask,
                          int64_t score_bytes_per_seq = 0);

// ---- Fused decode (CUDA, CPU): the stored history read in place by ops::decode_attention --

/// Slots 0 .. len - 1 of one layer's K and V storage, seen by a decode query. Store is how the
/// storage is held: a layout's buffers (Parts, [N, H, S, w] each: SlotRegion in layout.h) or
/// the ops' view of them (ops::KvStore, shapes in eli/ops.h: DecodeRegion).
template <class Store>
struct Region {
  Store k{}, v{};
  at::Tensor block_table{};  // paged: [B, max_blocks] int32; undefined = contiguous
  at::Tensor bias{};         // optional [B, >= len] fp32 logit bias (log count, -1e30 = masked)
  int64_t len = 0;
  /// Optional int32 [B] on the device: slots read per sequence (<= len, which then only bounds
  /// the grid). Undefined: every sequence reads len slots.
  at::Tensor seq_lens{};
};
using DecodeRegion = Region<ops::KvStore>;

/// Logit bias of a slot that must not be seen (finite, so a fully masked split stays finite
/// and merges with weight 0).
constexpr float kMaskedLogit = -1e30f;

/// One decode step: q [B, H, 1, D] against every region (each read with decode_attention)
/// plus k_new, v_new [B, H, 1, D] at full precision, merged exactly (ops::merge_attention).
/// lens: int32 [>= max len + 1, B] on q's device with row n all n (seq_lens without a
/// host->device copy). fp stores must have q's dtype. Returns [B, H, 1, D] in q's dtype.
/// append (CUDA, unquantized last region): k_new / v_new are also stored into the last region's
/// storage there (ops::decode_attention_with_new).
at::Tensor attend_regions(const at::Tensor& q, const std::vector<DecodeRegion>& regions,
                          const at::Tensor& lens, const at::Tensor& k_new, const at::Tensor& v_new,
                          const ops::SlotMap* append = nullptr);

/// Test hooks: whether decode steps may take the fused path (default true), and how many
/// layer-steps did.
std::atomic<bool>& fused_decode_enabled();
std::atomic<int64_t>& fused_decode_steps();
/// Read when a cache is built: whether CPU caches take the fused decode path (default true),
/// through the ops' CPU kernel (src/ops/attention_cpu.cpp, any head_dim). Tests set it false to
/// build a CPU cache on the ATen path.
std::atomic<bool>& fused_decode_on_cpu();
/// Whether a layout on `device` builds the device tables of the fused path.
inline bool fused_decode_tables(const at::Device& device) {
  return device.is_cuda() || fused_decode_on_cpu().load();
}

}  // namespace eli::cache
