// Caches under a model: a tiny random GPT-2 (2 layers, 2 heads, head_dim 32), token ids forced
// from a fixed random stream so every cache sees the same inputs.

#include <gtest/gtest.h>

#include <map>

#include "eli/error.h"
#include "eli/kv_cache.h"
#include "eli/model.h"

namespace eli {
namespace {

constexpr int64_t kBatch = 2, kPrompt = 12;

const model::GPT2& tiny() {
  static const model::GPT2 m =
      model::GPT2::random(GPT2Config::named("L2-E64-H2-V1000-P512"), 7, at::kCPU, at::kFloat);
  return m;
}

at::Tensor stream(int64_t n) {
  at::manual_seed(99);
  return at::randint(0, 1000, {kBatch, n}, at::kLong);
}

// Logits [B, vocab] of every step: the prompt's last position, then `steps` forced decode steps.
std::vector<at::Tensor> run(const std::string& method, int64_t steps, const CacheConfig& c = {},
                            const QuantizationConfig& q = {}) {
  const auto& m = tiny();
  auto cache = make_cache(method, m.shape(), kBatch, c, q, at::kFloat, at::kCPU);
  auto ids = stream(kPrompt + steps);
  std::vector<at::Tensor> out;
  out.push_back(m.forward_last(ids.narrow(1, 0, kPrompt), 0, cache.get()));
  for (int64_t s = 0; s < steps; ++s) {
    out.push_back(m.forward_last(ids.narrow(1, kPrompt + s, 1), kPrompt + s, cache.get()));
  }
  EXPECT_EQ(cache->stats().tokens_seen, kPrompt + steps);
  return out;
}

double max_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
  return d;
}

TEST(CacheModel, PagedLogitsBitIdenticalToContiguousOver300Steps) {
  CacheConfig c;
  c.block_size = 16;
  for (const std::string codec : {"", "+int8", "+mixed"}) {
    auto a = run("full" + codec, 300, c), b = run("paged" + codec, 300, c);
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(at::equal(a[i], b[i]))
          << codec << " step " << i << " diff " << (a[i] - b[i]).abs().max().item<float>();
    }
  }
}

TEST(CacheModel, QuantizedLogitsWithinMeasuredBounds) {
  // Bounds: about 2x the max |logit difference| measured against the fp32 full cache over
  // 100 steps (logits of this random model have std ~0.6).
  auto ref = run("full_cache", 100);
  const std::map<std::string, double> bound{
      {"quant_int8", 1.6e-3},           {"quant_int4", 2.8e-2},
      {"quant_mixed", 2.8e-2},          {"full+int8/per_tensor", 2.5e-3},
      {"full+int4/group32/zp", 2.1e-2}, {"full+int4+rotate", 2.2e-2}};
  std::map<std::string, double> got;
  for (const auto& [m, b] : bound) {
    got[m] = max_diff(run(m, 100), ref);
    EXPECT_LE(got[m], b) << m;
    EXPECT_GT(got[m], 0.0) << m << ": quantization changed nothing";
  }
  EXPECT_LT(got["quant_int8"], got["quant_int4"]);
  for (const auto& [m, d] : got) std::printf("  %-24s max |dlogit| = %.3g\n", m.c_str(), d);
}

TEST(CacheModel, EveryLayoutAndCodecDecodes200Steps) {
  CacheConfig c;
  c.window_size = 64;
  c.sink_tokens = 4;
  c.chunk_size = 16;
  c.keep_last = 48;
  c.block_size = 32;
  for (const std::string layout : {"full", "sliding", "paged", "chunked"}) {
    for (const std::string codec : {"fp", "int8", "int4", "mixed", "int8/per_tensor"}) {
      auto logits = run(layout + "+" + codec, 200, c);
      for (const auto& l : logits) {
        ASSERT_TRUE(at::isfinite(l).all().item<bool>()) << layout << "+" << codec;
      }
    }
  }
}

TEST(CacheModel, SlidingAndChunkedEqualFullWhileShort) {
  CacheConfig c;
  c.window_size = 100;
  c.keep_last = 100;
  auto ref = run("full_cache", 60, c);
  EXPECT_EQ(max_diff(run("sliding_window", 60, c), ref), 0.0);
  EXPECT_EQ(max_diff(run("chunked_cache", 60, c), ref), 0.0);
  // Past the window they differ.
  c.window_size = 20;
  EXPECT_GT(max_diff(run("sliding_window", 60, c), ref), 0.0);
}

}  // namespace
}  // namespace eli
