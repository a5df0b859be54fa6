// sample_next_device (the CUDA decode loop's sampler) runs on any device; here on the CPU:
// greedy is the argmax, seeded draws are reproducible and depend on seed and step, the top-k /
// top-p filters hold, and the draws follow softmax(logits / T) (chi-square against the exact
// probabilities over many independent steps).
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "eli/error.h"
#include "eli/generator.h"

namespace {

using eli::sample_next_device;
using eli::SamplingConfig;

at::Tensor step(int64_t s) { return at::full({1}, s, at::kLong); }

TEST(SampleNextDevice, GreedyIsArgmax) {
  at::manual_seed(1);
  const at::Tensor logits = at::randn({5, 301});
  EXPECT_TRUE(at::equal(sample_next_device(logits, SamplingConfig{}, step(0)), logits.argmax(-1)));
}

TEST(SampleNextDevice, SeedAndStepDecideTheDraw) {
  at::manual_seed(2);
  const at::Tensor logits = at::zeros({4, 1000});  // uniform: every draw is the noise alone
  SamplingConfig c;
  c.temperature = 1.0f;
  c.seed = 7;
  const at::Tensor a = sample_next_device(logits, c, step(3));
  EXPECT_TRUE(at::equal(a, sample_next_device(logits, c, step(3))));
  EXPECT_FALSE(at::equal(a, sample_next_device(logits, c, step(4))));
  c.seed = 8;
  EXPECT_FALSE(at::equal(a, sample_next_device(logits, c, step(3))));
  c.seed = 7 + (uint64_t{1} << 40);  // the high half of the seed counts too
  EXPECT_FALSE(at::equal(a, sample_next_device(logits, c, step(3))));
  // Rows draw independently: 4 uniform rows of 1000 rarely agree everywhere.
  EXPECT_GT(std::set<int64_t>(a.data_ptr<int64_t>(), a.data_ptr<int64_t>() + 4).size(), 1u);
}

TEST(SampleNextDevice, FiltersHold) {
  at::manual_seed(3);
  const at::Tensor logits = at::randn({3, 200}) * 3;
  SamplingConfig c;
  c.temperature = 1.5f;
  c.top_k = 5;
  const at::Tensor top5 = std::get<1>(logits.topk(5, -1));
  c.top_p = 1.0f;
  for (int64_t s = 0; s < 200; ++s) {
    const at::Tensor pick = sample_next_device(logits, c, step(s));
    for (int64_t b = 0; b < 3; ++b) {
      ASSERT_TRUE(top5[b].eq(pick[b]).any().item<bool>()) << "step " << s << " row " << b;
    }
  }
  c.top_k = 0;
  c.top_p = 0.5f;  // the nucleus: sorted tokens whose preceding mass is below 0.5
  const auto sorted = logits.sort(-1, true);
  const at::Tensor probs = at::softmax(std::get<0>(sorted) / c.temperature, -1);
  const at::Tensor before = probs.cumsum(-1) - probs;
  for (int64_t s = 0; s < 200; ++s) {
    const at::Tensor pick = sample_next_device(logits, c, step(s));
    for (int64_t b = 0; b < 3; ++b) {
      const int64_t rank = std::get<1>(sorted)[b].eq(pick[b]).nonzero().item<int64_t>();
      ASSERT_LT(before[b][rank].item<float>(), 0.5f) << "step " << s << " row " << b;
    }
  }
}

TEST(SampleNextDevice, DrawsFollowTheSoftmax) {
  const at::Tensor logits = at::tensor({0.0f, 1.0f, 2.0f, -1.0f, 0.5f, 1.5f}).view({1, 6});
  SamplingConfig c;
  c.temperature = 0.8f;
  c.seed = 123;
  const at::Tensor p = at::softmax(logits / c.temperature, -1)[0];
  constexpr int kDraws = 20000;
  std::vector<double> count(6, 0.0);
  for (int64_t s = 0; s < kDraws; ++s)
    count[sample_next_device(logits, c, step(s)).item<int64_t>()]++;
  double chi2 = 0;
  for (int i = 0; i < 6; ++i) {
    const double e = kDraws * p[i].item<double>();
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  // 5 degrees of freedom: P(chi2 > 25.7) = 1e-4 for a correct sampler.
  EXPECT_LT(chi2, 25.7) << "observed counts far from softmax(logits / T)";
}

TEST(SampleNextDevice, BadArgumentsAreErrors) {
  const at::Tensor logits = at::zeros({2, 10});
  SamplingConfig c;
  EXPECT_THROW(sample_next_device(logits.view({20}), c, step(0)), eli::Error);
  EXPECT_THROW(sample_next_device(logits, c, at::zeros({2}, at::kLong)), eli::Error);
  EXPECT_THROW(sample_next_device(logits, c, at::zeros({1}, at::kInt)), eli::Error);
}

}  // namespace
