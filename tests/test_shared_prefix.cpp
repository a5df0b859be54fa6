// The shared-prefix workload of the Benchmarker: counts on the shipped model (CPU), not times.
#include <gtest/gtest.h>

#include "eli/benchmark/shared_prefix.h"
#include "eli/error.h"
#include "eli/model.h"

using eli::benchmark::SharedPrefixConfig;

TEST(SharedPrefix, PagedWithReuseComputesAndHoldsAFraction) {
  const auto model = eli::model::GPT2::from_spec("default", at::kCPU, at::kFloat);
  SharedPrefixConfig cfg;
  cfg.requests = 8;
  cfg.prefix_tokens = 128;
  cfg.own_tokens = 8;
  cfg.max_new_tokens = 4;
  cfg.repetitions = 1;
  const auto rows = eli::benchmark::run_shared_prefix(model, cfg);
  ASSERT_EQ(rows.size(), 2u);
  const auto& full = rows[0];
  const auto& paged = rows[1];
  EXPECT_EQ(full.prefill_tokens, 8 * 136);
  EXPECT_EQ(full.reused_tokens, 0);
  // The system prompt (8 blocks of 16) is in the kept pool: each request computes its own 8.
  EXPECT_EQ(paged.prefill_tokens, 8 * 8);
  EXPECT_EQ(paged.reused_tokens, 8 * 128);
  // The kept pool: 8 shared blocks + one per request (8 own + 3 generated positions) + the
  // scratch block, 17 x 16 slots, against full_cache's 8 x 1024.
  EXPECT_LT(paged.kv_bytes_held * 16, full.kv_bytes_held);
  EXPECT_GT(paged.ttft_ms, 0.0);
  const std::string table = eli::benchmark::format_shared_prefix(rows, cfg);
  EXPECT_NE(table.find("paged(block=16"), std::string::npos) << table;
  EXPECT_NE(table.find("full"), std::string::npos) << table;
}

TEST(SharedPrefix, BadConfigsAreErrors) {
  const auto model = eli::model::GPT2::from_spec("default", at::kCPU, at::kFloat);
  SharedPrefixConfig cfg;
  cfg.requests = 0;
  EXPECT_THROW(eli::benchmark::run_shared_prefix(model, cfg), eli::Error);
  cfg.requests = 2;
  cfg.prefix_tokens = 2000;  // past n_positions
  EXPECT_THROW(eli::benchmark::run_shared_prefix(model, cfg), eli::Error);
  cfg.prefix_tokens = 16;
  cfg.paged_method = "full_cache";  // not a paged cache
  EXPECT_THROW(eli::benchmark::run_shared_prefix(model, cfg), eli::Error);
}
