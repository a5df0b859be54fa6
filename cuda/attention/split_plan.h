#pragma once
/// How the decode attention divides each (sequence, head)'s tokens into splits of one block
/// each (flash-decoding). Plain host C++, no CUDA: the CPU tests check the choices.

#include <cstddef>
#include <cstdint>

namespace eli::cuda::detail {

/// Longest split: the kernel keeps one logit and one storage row per slot in shared memory.
constexpr int kMaxSplitLen = 1024;
/// Split lengths are multiples of this.
constexpr int kSplitStep = 64;
/// What a quantized kernel's block costs beyond its tokens, in tokens' worth (the slot rows, q,
/// the softmax's barriers, the partials' write), and the granule a block's tokens are counted
/// in (its loops take 128 or 256 tokens per iteration of the block, so a split's cost moves in
/// steps): both fitted to a split-length sweep on an H200 (docs/notes/kernels_history.md,
/// session 12), with 128 closer to the measured times than 64 or 256.
constexpr int kSplitOverheadTokens = 96;
constexpr int kSplitGranule = 128;
/// Blocks an SM runs at once before another adds no speed, for the kernels whose values go
/// through the tensor cores (INT4 V): they are bound by instruction issue, and the sweep's times
/// fit rounds of two blocks per SM, not of the eight the SM can hold.
constexpr int kIssueBoundBlocksPerSm = 2;

/// Whether a caller's split length (DecodeAttentionArgs::split_len) is one the kernel takes: 0
/// (planned) or a multiple of kSplitStep up to kMaxSplitLen. The op and the launcher both ask.
constexpr bool split_len_valid(int64_t s) {
  return s == 0 || (s >= kSplitStep && s <= kMaxSplitLen && s % kSplitStep == 0);
}

struct SplitPlan {
  int split_len;
  int num_splits;
  /// The launcher's: splits of the planned length (the longer of plan_len and max_len), which
  /// the reduce's width follows so that the output's bits do not depend on max_len.
  int planned_splits = 0;
};

/// Splits for the unquantized kernels, which stream at the memory's speed: long enough that a
/// block amortizes its setup, short enough that rows x splits fills the card about eight blocks
/// per SM deep, rounded down to a power of two (from kSplitStep to kMaxSplitLen), so the grid
/// only grows. In split-length sweeps on an H200 (docs/notes/kernels_history.md, sessions 12 and
/// 15) the lengths between were never the fastest at an fp16 point and lost where the rule took
/// them: 384 runs as slowly as 512 (the value loop takes 256 tokens per iteration of the block
/// at D 64), 768 left B 32 x 2048 at 56.7 us against 51.6 at 512 and 50.8 at 256 (B 8 x 8192:
/// 53.3 against 51.4 at 512), 192 left B 32 x 512 at 18.9 against 17.5 at 128.
inline SplitPlan plan_splits_fill(int64_t rows, int64_t len, int64_t sms) {
  rows = rows < 1 ? 1 : rows;
  len = len < 1 ? 1 : len;
  sms = sms < 1 ? 1 : sms;
  const int64_t target_blocks = sms * 8;
  const int64_t want = (rows * len + target_blocks - 1) / target_blocks;
  int64_t s = kSplitStep;
  while (s < kMaxSplitLen && 2 * s <= (want + kSplitStep - 1) / kSplitStep * kSplitStep) s *= 2;
  return {static_cast<int>(s), static_cast<int>((len + s - 1) / s)};
}

/// The split lengths the quantized kernels' plans choose from, longest first: the lengths a
/// split-length sweep on an H200 measured (docs/notes/kernels_history.md, session 12). A
/// 384-token split ran as slowly as a 512-token one there (the value loop takes 256 tokens per
/// iteration of the block at D 64: the last one half empty). 768 = 3 x 256 only where the
/// values go through rows (INT8 V): it fills a B 8 x 8192 grid in one round (1056 blocks) and
/// won there; for the INT4-V kernels the rounds below prefer it at B 1 x 32768 (516 blocks in
/// two rounds of 2 an SM), where it measured 5-14% slower than 512-token splits.
constexpr int kSplitLensIssueBound[] = {1024, 512, 256, 128, 64};
constexpr int kSplitLensResident[] = {1024, 768, 512, 256, 128, 64};
static_assert(kSplitLensIssueBound[0] == kMaxSplitLen && kSplitLensResident[0] == kMaxSplitLen,
              "the longest split is the kernel's limit");

/// Splits for the quantized kernels, which are bound by issue and latency (a block's time
/// grows with its tokens whatever runs beside it): for `rows` = B x H (sequence, head) pairs of
/// `len` tokens with `slots` blocks running at full speed at once, the length of `lens`
/// (longest first) whose rounds cost least,
///   ceil(rows x splits / slots) x (min(split_len, len) rounded up to kSplitGranule
///                                  + kSplitOverheadTokens),
/// the longest on a tie (fewer partials to merge). At B = 32, H = 12, 4096 tokens and 1056 slots
/// (INT8 V, 8 blocks an SM), 512-token splits (3072 blocks, 3 rounds of 608) beat 1024-token
/// ones (1536 blocks, 2 rounds of 1120); with 264 slots (INT4 V, 2 an SM) 1024 wins, 6 rounds
/// of 1120 against 12 of 608.
template <size_t N>
SplitPlan plan_splits_rounds(int64_t rows, int64_t len, int64_t slots, const int (&lens)[N]) {
  rows = rows < 1 ? 1 : rows;
  len = len < 1 ? 1 : len;
  slots = slots < 1 ? 1 : slots;
  SplitPlan best{kMaxSplitLen, static_cast<int>((len + kMaxSplitLen - 1) / kMaxSplitLen)};
  int64_t best_cost = -1;
  for (const int s : lens) {  // longest first: keeps ties
    const int64_t splits = (len + s - 1) / s;
    const int64_t rounds = (rows * splits + slots - 1) / slots;
    const int64_t tokens = s < len ? s : len;
    const int64_t cost = rounds * ((tokens + kSplitGranule - 1) / kSplitGranule * kSplitGranule +
                                   kSplitOverheadTokens);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = {s, static_cast<int>(splits)};
    }
  }
  return best;
}

}  // namespace eli::cuda::detail
