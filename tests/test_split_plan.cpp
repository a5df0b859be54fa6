// The decode attention's split plans (cuda/attention/split_plan.h, plain host C++), on the CPU:
// the quantized kernels' (the split length that costs the fewest rounds of blocks at full speed)
// and the unquantized kernels' (fill the card about eight blocks per SM deep).

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <random>

#include "../cuda/attention/split_plan.h"

namespace eli::cuda::detail {
namespace {

int64_t cost(int64_t rows, int64_t len, int64_t slots, int s) {
  const int64_t splits = (len + s - 1) / s;
  const int64_t tokens = std::min<int64_t>(s, len);
  return (rows * splits + slots - 1) / slots *
         ((tokens + kSplitGranule - 1) / kSplitGranule * kSplitGranule + kSplitOverheadTokens);
}

// The points the GPU benchmarks run (H200: 132 SMs). INT8 V: 8 resident blocks an SM, 1056
// slots; INT4 V (int4, int4 g32, mixed): 2 an SM at full speed, 264 slots. What the sweep of
// docs/notes/kernels_history.md (session 12) measured fastest, or within 4% of it.
SplitPlan int4v(int64_t rows, int64_t len) {
  return plan_splits_rounds(rows, len, 132 * kIssueBoundBlocksPerSm, kSplitLensIssueBound);
}
SplitPlan int8v(int64_t rows, int64_t len, int64_t slots = 1056) {
  return plan_splits_rounds(rows, len, slots, kSplitLensResident);
}

TEST(SplitPlan, ChoicesAtTheBenchmarkedPoints) {
  // 32 x 3968 end to end (capacity 4096): INT8 V splits finer, INT4 V keeps 1024.
  EXPECT_EQ(int8v(32 * 12, 4096).split_len, 512);
  EXPECT_EQ(int8v(32 * 12, 4096).num_splits, 8);
  EXPECT_EQ(int4v(32 * 12, 4096).split_len, 1024);
  EXPECT_EQ(int4v(32 * 12, 4096).num_splits, 4);
  // Long contexts at B 32 keep the longest splits (also INT8 K at D 128: 6 an SM).
  EXPECT_EQ(int4v(32 * 12, 8192).split_len, 1024);
  EXPECT_EQ(int8v(32 * 12, 8192).split_len, 1024);
  EXPECT_EQ(int8v(32 * 12, 8192, 792).split_len, 1024);
  // B 32 x 2048: one split per 1024 tokens for INT4 V (768 took 7% longer, 256 28%; the fill
  // plan of the unquantized kernels takes 512); B 32 x 512 and B 8 x 2048: 256.
  EXPECT_EQ(int4v(32 * 12, 2048).split_len, 1024);
  EXPECT_EQ(plan_splits_fill(32 * 12, 2048, 132).split_len, 512);
  EXPECT_EQ(int4v(32 * 12, 512).split_len, 256);
  EXPECT_EQ(int8v(32 * 12, 512).split_len, 256);
  EXPECT_EQ(int4v(8 * 12, 2048).split_len, 256);
  // B 8 x 8192 with INT8 V: 768-token splits fill one round exactly (11 x 96 = 1056 blocks).
  EXPECT_EQ(int8v(8 * 12, 8192).split_len, 768);
  EXPECT_EQ(int4v(8 * 12, 8192).split_len, 1024);
  // Few rows: B 1 x 8192 512, B 1 x 2048 128; the 1.5B shape (H 25) at 1024 tokens 128.
  EXPECT_EQ(int4v(12, 8192).split_len, 512);
  EXPECT_EQ(int8v(12, 2048).split_len, 128);
  EXPECT_EQ(int4v(25, 1024).split_len, 128);
  // B 1 x 32768: 512-token splits (768 blocks), one round of INT8 V, three of INT4 V (768
  // would take two, but measured slower: not among the INT4-V lengths).
  EXPECT_EQ(int8v(12, 32768).split_len, 512);
  EXPECT_EQ(int8v(12, 32768).num_splits, 64);
  EXPECT_EQ(int4v(12, 32768).split_len, 512);
  EXPECT_EQ(plan_splits_rounds(12, 32768, 264, kSplitLensResident).split_len, 768);
}

template <size_t N>
void check_cheapest(const int (&lens)[N]) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20000; ++i) {
    const int64_t rows = 1 + int64_t(rng() % 4096), len = 1 + int64_t(rng() % 70000);
    const int64_t slots = 1 + int64_t(rng() % 4000);
    const SplitPlan p = plan_splits_rounds(rows, len, slots, lens);
    ASSERT_NE(std::find(std::begin(lens), std::end(lens), p.split_len), std::end(lens));
    ASSERT_EQ(p.split_len % kSplitStep, 0);
    ASSERT_GE(int64_t(p.num_splits) * p.split_len, len) << "the splits cover the tokens";
    ASSERT_LT(int64_t(p.num_splits - 1) * p.split_len, len) << "and no split is empty";
    const int64_t best = cost(rows, len, slots, p.split_len);
    for (int s : lens) {
      const int64_t c = cost(rows, len, slots, s);
      ASSERT_GE(c, best) << rows << " x " << len << " on " << slots << ": " << s << " is cheaper";
      if (c == best) {
        ASSERT_LE(s, p.split_len) << "a tie keeps the longest split";
      }
    }
  }
}

TEST(SplitPlan, CheapestCoveringPlanLongestOnTies) {
  check_cheapest(kSplitLensIssueBound);
  check_cheapest(kSplitLensResident);
}

TEST(SplitPlan, ShortAndDegenerateInputsGiveOneSplit) {
  for (int64_t v : {int64_t(1), int64_t(0), int64_t(-5)}) {
    const SplitPlan p = plan_splits_rounds(v, v, v, kSplitLensResident);
    EXPECT_EQ(p.num_splits, 1);
    EXPECT_EQ(p.split_len, kMaxSplitLen);
  }
}

TEST(SplitPlan, FillPlanForTheUnquantizedKernels) {
  EXPECT_EQ(plan_splits_fill(32 * 12, 8192, 132).split_len, 1024);  // capped
  EXPECT_EQ(plan_splits_fill(32 * 12, 8192, 132).num_splits, 8);
  // 393216 / 1056 -> 373 -> 384 -> 256 (powers of two, rounded down)
  EXPECT_EQ(plan_splits_fill(12, 32768, 132).split_len, 256);
  EXPECT_EQ(plan_splits_fill(12, 32768, 132).num_splits, 128);
  EXPECT_EQ(plan_splits_fill(32 * 12, 1024, 132).split_len, 256);  // 32 x 896 end to end: 372
  EXPECT_EQ(plan_splits_fill(8 * 12, 8192, 132).split_len, 512);   // 745 -> 768 -> 512
  EXPECT_EQ(plan_splits_fill(8 * 12, 7000, 132).split_len, 512);   // 637 -> 640 -> 512
  EXPECT_EQ(plan_splits_fill(12, 16384, 132).split_len, 128);      // 187 -> 192 -> 128
  EXPECT_EQ(plan_splits_fill(32 * 12, 512, 132).split_len, 128);   // B 32 x 512: 187 -> 128
  for (int64_t len = 1; len <= 40000; len += 37) {
    const int s = plan_splits_fill(7, len, 132).split_len;
    EXPECT_TRUE(s >= kSplitStep && s <= kMaxSplitLen && (s & (s - 1)) == 0) << len << ": " << s;
  }
  EXPECT_EQ(plan_splits_fill(25, 1024, 132).split_len, 64);  // at least kSplitStep
  EXPECT_EQ(plan_splits_fill(25, 100, 132).num_splits, 2);
  EXPECT_EQ(plan_splits_fill(0, 0, 0).num_splits, 1);
}

}  // namespace
}  // namespace eli::cuda::detail
