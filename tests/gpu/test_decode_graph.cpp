// The CUDA-graph decode loop against the eager step (GenerationConfig::cuda_graph = false):
// greedy tokens must be identical for every method and layout x codec, including steps that
// fall back to eager (chunk pooling, per-tensor codecs) and stop tokens; seeded sampling on the
// device is reproducible (label gpu; skipped without a GPU).

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <string>
#include <vector>

#include "decode_loop.h"
#include "eli/generator.h"
#include "eli/kv_cache.h"
#include "eli/model.h"
#include "eli/ops.h"
#include "gpu_test_util.h"

namespace eli {
namespace {

constexpr int64_t kBatch = 3, kPrompt = 40;
constexpr int kNew = 100;

using gpu_test::gpu_available;

const model::GPT2& tiny() { return gpu_test::tiny_gpt2(); }

std::vector<std::vector<int64_t>> prompts() {
  std::vector<std::vector<int64_t>> p(kBatch);
  for (int64_t b = 0; b < kBatch; ++b) {
    for (int64_t t = 0; t < kPrompt; ++t) p[b].push_back((t * 7919 + b * 104729 + 13) % 1000);
  }
  return p;
}

GenerationConfig config(const std::string& method, bool graph) {
  return gpu_test::small_cache_config(method, kNew, graph);
}

class DecodeGraph : public ::testing::TestWithParam<std::string> {};

TEST_P(DecodeGraph, GreedyTokensEqualTheEagerStep) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const std::string method = GetParam();
  const GenerationConfig eager_cfg = config(method, false), graph_cfg = config(method, true);
  const auto eager = Generator(tiny()).generate(prompts(), eager_cfg);
  const int64_t before = detail::graph_replays().load();
  const auto graph = Generator(tiny()).generate(prompts(), graph_cfg);
  const int64_t replays = detail::graph_replays().load() - before;
  for (int64_t b = 0; b < kBatch; ++b) {
    ASSERT_EQ(eager.tokens[b].size(), graph.tokens[b].size()) << method << " seq " << b;
    for (size_t i = 0; i < eager.tokens[b].size(); ++i) {
      ASSERT_EQ(eager.tokens[b][i], graph.tokens[b][i])
          << method << ": seq " << b << " first differs at token " << i;
    }
  }
  EXPECT_EQ(eager.cache_stats.tokens_seen, graph.cache_stats.tokens_seen);
  EXPECT_EQ(eager.cache_stats.allocated_bytes(), graph.cache_stats.allocated_bytes());
  EXPECT_EQ(graph.timing.decode_ms.size(), static_cast<size_t>(kNew - 1));
  if (method.find("per_tensor") != std::string::npos) {
    EXPECT_EQ(replays, 0) << "a per-tensor scale grows from the data: every step runs eagerly";
  } else if (method.rfind("chunked", 0) == 0) {
    EXPECT_GT(replays, kNew / 2) << "most chunked steps replay (pooling steps run eagerly)";
  } else {
    EXPECT_EQ(replays, kNew - 2) << "every step after the warm-up step replays";
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, DecodeGraph,
                         ::testing::Values("full_cache", "sliding_window", "quant_int8",
                                           "quant_int4", "quant_mixed", "paged_attention",
                                           "chunked_cache", "sliding_window+int4",
                                           "paged(block=16)+int8", "chunked_cache+int4",
                                           "full+int4/per_token_head+rotate+residual=8",
                                           "paged+mixed+residual=8",
                                           "sliding(window=32,sinks=0)+int8/zp",
                                           "full+int8/per_tensor", "full+k:fp,v:int4"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n;
                           for (char c : info.param)
                             n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

TEST(DecodeGraphStop, StopTokensEndLikeTheEagerStep) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const auto free_run = Generator(tiny()).generate(prompts(), config("quant_int4", true));
  GenerationConfig eager_cfg = config("quant_int4", false), graph_cfg = config("quant_int4", true);
  // Sequence 1's 12th token: it stops there (or earlier where it first appears).
  eager_cfg.stop_tokens = graph_cfg.stop_tokens = {free_run.tokens[1][11]};
  const auto eager = Generator(tiny()).generate(prompts(), eager_cfg);
  const auto graph = Generator(tiny()).generate(prompts(), graph_cfg);
  EXPECT_LE(graph.tokens[1].size(), 12u);
  for (int64_t b = 0; b < kBatch; ++b) EXPECT_EQ(eager.tokens[b], graph.tokens[b]) << "seq " << b;
  EXPECT_EQ(eager.cache_stats.tokens_seen, graph.cache_stats.tokens_seen);
}

TEST(DecodeGraphSampling, SeededSamplingIsReproducibleAndSeedDependent) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  GenerationConfig c = config("full_cache", true);
  c.sampling.temperature = 1.0f;
  c.sampling.top_k = 50;
  c.sampling.top_p = 0.95f;
  c.sampling.seed = 11;
  const auto a = Generator(tiny()).generate(prompts(), c);
  const auto b = Generator(tiny()).generate(prompts(), c);
  c.sampling.seed = 12;
  const auto other = Generator(tiny()).generate(prompts(), c);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens, other.tokens);
  // Sampling is not greedy: some token differs from the argmax run.
  const auto greedy = Generator(tiny()).generate(prompts(), config("full_cache", true));
  EXPECT_NE(a.tokens, greedy.tokens);
}

// With the caching allocator turned off (PYTORCH_NO_CUDA_MEMORY_CACHING, compute-sanitizer's
// usual setting) nothing may be allocated during a capture: the steps run eagerly instead, with
// the same tokens. (Torch reads the variable once, so its allocator keeps caching here; this
// checks eli's side of it. scripts/gpu_sanitize.sh runs the suite with the allocator off.)
TEST(DecodeGraphNoCachingAllocator, StepsRunEagerlyWithTheSameTokens) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const char* before_env = std::getenv("PYTORCH_NO_CUDA_MEMORY_CACHING");
  const std::string saved = before_env ? before_env : "";
  const auto eager = Generator(tiny()).generate(prompts(), config("quant_int8", false));
  setenv("PYTORCH_NO_CUDA_MEMORY_CACHING", "1", 1);
  const int64_t before = detail::graph_replays().load();
  const auto graph = Generator(tiny()).generate(prompts(), config("quant_int8", true));
  const int64_t replays = detail::graph_replays().load() - before;
  if (before_env) {
    setenv("PYTORCH_NO_CUDA_MEMORY_CACHING", saved.c_str(), 1);
  } else {
    unsetenv("PYTORCH_NO_CUDA_MEMORY_CACHING");
  }
  EXPECT_EQ(replays, 0);
  EXPECT_EQ(eager.tokens, graph.tokens);
}

}  // namespace
}  // namespace eli
