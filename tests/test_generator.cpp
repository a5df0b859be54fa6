// Decode loop: full-cache incremental logits equal no-cache recomputation; greedy and seeded
// sampling are deterministic; stop tokens, callbacks, batches and limits behave.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <set>

#include "eli/error.h"
#include "eli/generator.h"
#include "eli/model.h"

using eli::GenerationConfig;
using eli::Generator;
using eli::GPT2Config;
using eli::model::GPT2;

namespace {

const GPT2& tiny_model() {
  static const GPT2 m =
      GPT2::random(GPT2Config::named("L2-E64-H2-V300-P96"), 7, at::kCPU, at::kFloat);
  return m;
}

std::vector<int64_t> prompt(int64_t n, int64_t seed) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < n; ++i) p.push_back((i * 37 + seed * 11 + 5) % 300);
  return p;
}

}  // namespace

TEST(Generator, FullCacheEqualsRecomputeAtEveryStep) {
  const GPT2& m = tiny_model();
  const int64_t batch = 3, plen = 13, steps = 40;
  at::manual_seed(11);
  at::Tensor ids = at::randint(0, 300, {batch, plen + steps}, at::kLong);
  auto cache = eli::make_cache("full_cache", m.shape(), batch, {}, {}, at::kFloat, at::kCPU);
  at::Tensor got = m.forward(ids.narrow(1, 0, plen), 0, cache.get());
  at::Tensor want = m.forward(ids.narrow(1, 0, plen), 0, nullptr);
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);
  for (int64_t t = plen; t < plen + steps; ++t) {
    got = m.forward(ids.narrow(1, t, 1), t, cache.get()).select(1, 0);
    want = m.forward(ids.narrow(1, 0, t + 1), 0, nullptr).select(1, t);
    const double err = (got - want).abs().max().item<double>();
    ASSERT_LT(err, 1e-5) << "step " << t;
  }
}

TEST(Generator, GreedyIsDeterministicAndMatchesNoCache) {
  Generator g(tiny_model());
  GenerationConfig cfg;
  cfg.max_new_tokens = 30;
  const auto a = g.generate({prompt(9, 1)}, cfg);
  const auto b = g.generate({prompt(9, 1)}, cfg);
  EXPECT_EQ(a.tokens, b.tokens);
  ASSERT_EQ(a.tokens[0].size(), 30u);
  EXPECT_EQ(a.timing.decode_ms.size(), 29u);
  cfg.method = "no_cache";
  const auto c = g.generate({prompt(9, 1)}, cfg);
  EXPECT_EQ(a.tokens, c.tokens);
  EXPECT_EQ(c.cache_stats.total_bytes(), 0);
  EXPECT_GT(a.cache_stats.total_bytes(), 0);
}

TEST(Generator, SeededSamplingIsDeterministic) {
  Generator g(tiny_model());
  GenerationConfig cfg;
  cfg.max_new_tokens = 25;
  cfg.sampling.temperature = 1.5f;
  cfg.sampling.top_p = 0.95f;
  cfg.sampling.seed = 5;
  const auto a = g.generate({prompt(5, 2), prompt(5, 3)}, cfg);
  const auto b = g.generate({prompt(5, 2), prompt(5, 3)}, cfg);
  EXPECT_EQ(a.tokens, b.tokens);
  cfg.sampling.seed = 6;
  const auto c = g.generate({prompt(5, 2), prompt(5, 3)}, cfg);
  EXPECT_NE(a.tokens, c.tokens);
}

TEST(Generator, TopKOneIsGreedy) {
  Generator g(tiny_model());
  GenerationConfig greedy;
  greedy.max_new_tokens = 12;
  GenerationConfig k1 = greedy;
  k1.sampling.temperature = 0.7f;
  k1.sampling.top_k = 1;
  EXPECT_EQ(g.generate({prompt(6, 4)}, greedy).tokens, g.generate({prompt(6, 4)}, k1).tokens);
}

TEST(Generator, SamplingRespectsTopK) {
  at::Tensor logits = at::tensor(std::vector<float>{0.f, 5.f, 4.f, -1.f, 4.5f}).view({1, 5});
  eli::SamplingConfig s;
  s.temperature = 5.0f;
  s.top_k = 2;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  for (int i = 0; i < 200; ++i) {
    const int64_t t = eli::sample_next(logits, s, gen).item<int64_t>();
    ASSERT_TRUE(t == 1 || t == 4) << t;
  }
  s.top_k = 0;
  s.top_p = 0.3f;  // after temperature 5 the top token alone holds < 0.3: two tokens survive
  std::set<int64_t> seen;
  for (int i = 0; i < 300; ++i) seen.insert(eli::sample_next(logits, s, gen).item<int64_t>());
  EXPECT_EQ(seen, (std::set<int64_t>{1, 4}));
}

TEST(Generator, StopTokensAndCallback) {
  Generator g(tiny_model());
  GenerationConfig cfg;
  cfg.max_new_tokens = 20;
  const auto full = g.generate({prompt(7, 5)}, cfg);
  cfg.stop_tokens = {full.tokens[0][4]};
  std::vector<int64_t> streamed;
  const auto stopped = g.generate({prompt(7, 5)}, cfg, [&](int64_t seq, int64_t tok) {
    EXPECT_EQ(seq, 0);
    streamed.push_back(tok);
  });
  // Ends at the first occurrence of the stop token, which is included.
  const auto first = std::find(full.tokens[0].begin(), full.tokens[0].end(), cfg.stop_tokens[0]);
  const std::vector<int64_t> want(full.tokens[0].begin(), first + 1);
  EXPECT_EQ(stopped.tokens[0], want);
  EXPECT_EQ(streamed, want);
}

TEST(Generator, BatchRowsMatchSingleRuns) {
  Generator g(tiny_model());
  GenerationConfig cfg;
  cfg.max_new_tokens = 15;
  const auto batch = g.generate({prompt(8, 1), prompt(8, 2), prompt(8, 3)}, cfg);
  for (int i = 0; i < 3; ++i) {
    const auto single = g.generate({prompt(8, i + 1)}, cfg);
    EXPECT_EQ(batch.tokens[i], single.tokens[0]) << "row " << i;
  }
}

TEST(Generator, BadInputsGiveClearErrors) {
  Generator g(tiny_model());
  GenerationConfig cfg;
  cfg.max_new_tokens = 10;
  EXPECT_THROW(g.generate({}, cfg), eli::Error);
  EXPECT_THROW(g.generate({{}}, cfg), eli::Error);
  EXPECT_THROW(g.generate({prompt(4, 1), {}}, cfg), eli::Error);  // an empty prompt in a batch
  try {  // the longest prompt of a ragged batch decides the positions needed
    cfg.max_new_tokens = 90;
    g.generate({prompt(2, 1), prompt(10, 1)}, cfg);
    FAIL();
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("prompt of 10 tokens"), std::string::npos) << e.what();
  }
  cfg.max_new_tokens = 10;
  EXPECT_THROW(g.generate({{1, 2, 300}}, cfg), eli::Error);
  try {
    cfg.max_new_tokens = 90;
    g.generate({prompt(10, 1)}, cfg);
    FAIL();
  } catch (const eli::Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_positions = 96"), std::string::npos) << e.what();
  }
  cfg.max_new_tokens = 87;  // 10 + 87 - 1 = 96 positions: exactly fits
  EXPECT_EQ(g.generate({prompt(10, 1)}, cfg).tokens[0].size(), 87u);
  cfg.max_new_tokens = 5;
  cfg.sampling.top_p = 0.0f;
  EXPECT_THROW(g.generate({prompt(4, 1)}, cfg), eli::Error);
  cfg.sampling.top_p = 1.0f;
  cfg.sampling.temperature = -1.0f;
  EXPECT_THROW(g.generate({prompt(4, 1)}, cfg), eli::Error);
  cfg.sampling.temperature = 0.0f;
  cfg.method = "no_such_method";
  EXPECT_THROW(g.generate({prompt(4, 1)}, cfg), eli::Error);
}
