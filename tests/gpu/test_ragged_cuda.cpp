// Ragged batches on CUDA (label gpu; skipped without a GPU): the CUDA-graph decode loop gives
// each sequence of a ragged batch the tokens of the eager step, replaying every step; on the
// shipped model each sequence's greedy output equals its solo run (INT4: nearly, see below).

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
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

using gpu_test::gpu_available;

constexpr int kNew = 60;

std::vector<std::vector<int64_t>> prompts(int64_t vocab) {
  std::vector<std::vector<int64_t>> p;
  int64_t b = 0;
  for (int64_t len : {5, 61, 23, 40}) {
    p.emplace_back();
    for (int64_t t = 0; t < len; ++t) p.back().push_back((t * 7919 + b * 104729 + 13) % vocab);
    ++b;
  }
  return p;
}

GenerationConfig config(const std::string& method, bool graph) {
  return gpu_test::small_cache_config(method, kNew, graph);
}

class RaggedCuda : public ::testing::TestWithParam<std::string> {};

TEST_P(RaggedCuda, GraphStepEqualsEagerStep) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const model::GPT2& tiny = gpu_test::tiny_gpt2();
  const std::string method = GetParam();
  const auto eager = Generator(tiny).generate(prompts(1000), config(method, false));
  const int64_t before = detail::graph_replays().load();
  const auto graph = Generator(tiny).generate(prompts(1000), config(method, true));
  const int64_t replays = detail::graph_replays().load() - before;
  for (size_t b = 0; b < eager.tokens.size(); ++b) {
    EXPECT_EQ(eager.tokens[b], graph.tokens[b]) << method << " sequence " << b;
  }
  if (method.rfind("chunked", 0) == 0) {
    EXPECT_GT(replays, kNew / 2) << "most chunked steps replay (pooling steps run eagerly)";
  } else {
    EXPECT_EQ(replays, kNew - 2) << "every step after the warm-up step replays";
  }
}

TEST_P(RaggedCuda, ShippedModelSequencesEqualTheirSoloRuns) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  static const model::GPT2 shipped =
      model::GPT2::from_spec("default", at::Device(at::kCUDA, 0), at::kHalf);
  const std::string method = GetParam();
  const auto p = prompts(50000);
  const bool int4 =
      method.find("int4") != std::string::npos || method.find("mixed") != std::string::npos;
  for (bool graph : {true, false}) {
    GenerationConfig cfg = config(method, graph);
    cfg.max_new_tokens = 24;
    const auto batch = Generator(shipped).generate(p, cfg);
    for (size_t b = 0; b < p.size(); ++b) {
      const auto solo = Generator(shipped).generate({p[b]}, cfg);
      const auto& got = batch.tokens[b];
      const auto& want = solo.tokens[0];
      if (!int4) {
        EXPECT_EQ(got, want) << method << (graph ? " (graph)" : " (eager)") << " sequence " << b;
        continue;
      }
      // INT4: one near-tie token in 24 flipped on an H200 (quant_int4, sliding_window+int4),
      // most likely because the prefill's products run as one [B x T] GEMM in the batch and a
      // [T] one alone, and one fp16 rounding apart can move a 4-bit code (not isolated). The CPU
      // test, where the products agree, asks for equality.
      ASSERT_EQ(got.size(), want.size());
      size_t same = 0;
      for (size_t i = 0; i < got.size(); ++i) same += got[i] == want[i];
      EXPECT_GE(same * 10, got.size() * 9)
          << method << (graph ? " (graph)" : " (eager)") << " sequence " << b << ": " << same
          << " of " << got.size() << " tokens equal the solo run's";
    }
  }
}

TEST_P(RaggedCuda, StoppedSequencesSitOutGraphSteps) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  static const model::GPT2 shipped =
      model::GPT2::from_spec("default", at::Device(at::kCUDA, 0), at::kHalf);
  const std::string method = GetParam();
  const auto p = prompts(50000);
  GenerationConfig cfg = config(method, true);
  cfg.max_new_tokens = 24;
  const auto free_run = Generator(shipped).generate(p, cfg);
  // Stop sequence 0 early with a token the others never emit: it is released (paged: its
  // blocks go back) and sits out the later steps, which still replay the graph.
  size_t at = 2;
  for (size_t i = 1; i + 1 < free_run.tokens[0].size(); ++i) {
    bool elsewhere = false;
    for (size_t b = 1; b < p.size(); ++b) {
      const auto& t = free_run.tokens[b];
      elsewhere = elsewhere || std::find(t.begin(), t.end(), free_run.tokens[0][i]) != t.end();
    }
    if (!elsewhere) {
      at = i;
      break;
    }
  }
  cfg.stop_tokens = {free_run.tokens[0][at]};
  const int64_t before = detail::graph_replays().load();
  const auto graph = Generator(shipped).generate(p, cfg);
  const int64_t replays = detail::graph_replays().load() - before;
  cfg.cuda_graph = false;
  const auto eager = Generator(shipped).generate(p, cfg);
  for (size_t b = 0; b < p.size(); ++b) {
    EXPECT_EQ(graph.tokens[b], eager.tokens[b]) << method << " sequence " << b;
  }
  EXPECT_LE(graph.tokens[0].size(), at + 1);
  size_t steps = 0;  // steps run: every sequence stops or reaches max_new_tokens
  for (const auto& t : graph.tokens) steps = std::max(steps, t.size());
  if (method.rfind("chunked", 0) != 0) {
    EXPECT_EQ(replays, static_cast<int64_t>(steps) - 2)
        << method << ": every step after the warm-up replays, idle rows or not (sequence 0 "
        << "stopped after " << graph.tokens[0].size() << " tokens, the longest ran " << steps
        << ")";
  }
}

// A released sequence sits a graph step out (position -1) whatever the layout: the step is
// still taken as a graph step, and its storage went back.
TEST_P(RaggedCuda, ReleasedSequenceTakesGraphSteps) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const model::GPT2& tiny = gpu_test::tiny_gpt2();
  const GenerationConfig cfg = config(GetParam(), true);
  auto cache = Generator(tiny).make_cache_for(cfg, 2);
  const auto ids = at::randint(1000, {2, 9}, at::TensorOptions().dtype(at::kLong));
  tiny.forward_last(ids, {0, 0}, {9, 5}, cache.get());
  const int64_t held = cache->stats().blocks_in_use;
  ASSERT_TRUE(cache->release(0));
  if (GetParam().find("paged") != std::string::npos) {
    EXPECT_LT(cache->stats().blocks_in_use, held) << "the released sequence's blocks went back";
  }
  if (GetParam().find("chunked") == std::string::npos) {
    ASSERT_TRUE(cache->begin_graph_step({-1, 5}));
    const auto pos = at::tensor(std::vector<int64_t>{0, 5}, at::kLong).to(tiny.device());
    const auto logits = tiny.decode_logits(
        at::zeros({2, 1}, at::TensorOptions().dtype(at::kLong).device(tiny.device())), pos,
        cache.get());
    cache->end_graph_step({-1, 5});
    EXPECT_TRUE(at::isfinite(logits.select(0, 1)).all().item<bool>());
    EXPECT_TRUE(cache->begin_graph_step({-1, 6})) << "the idle sequence still holds nothing";
    cache->end_graph_step({-1, 6});
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, RaggedCuda,
                         ::testing::Values("full_cache", "sliding_window", "quant_int8",
                                           "quant_int4", "quant_mixed", "paged_attention",
                                           "chunked_cache", "sliding_window+int4",
                                           "paged(block=16)+int8",
                                           "full+int4/per_token_head+rotate+residual=8",
                                           "paged+mixed+residual=8"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n;
                           for (char c : info.param)
                             n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

}  // namespace
}  // namespace eli
