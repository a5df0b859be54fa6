// Metric functions against hand-computed values and plain fp64 loops.
#include <gtest/gtest.h>

#include <cmath>

#include "eli/benchmark/metrics.h"
#include "eli/error.h"

using namespace eli;
using namespace eli::benchmark;

TEST(Percentile, LinearInterpolationLikeNumpy) {
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 50), 2.5);
  std::vector<double> v;
  for (int i = 10; i >= 1; --i) v.push_back(i);
  EXPECT_DOUBLE_EQ(percentile(v, 90), 9.1);  // rank 0.9 * 9 = 8.1 -> 9 + 0.1
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 10);
  EXPECT_DOUBLE_EQ(percentile({7.5}, 90), 7.5);
  EXPECT_DOUBLE_EQ(median({3, 9, 1}), 3);
  EXPECT_DOUBLE_EQ(mean({1, 2, 6}), 3);
  EXPECT_THROW(percentile({}, 50), Error);
  EXPECT_THROW(percentile({1, 2}, 101), Error);
}

TEST(Stddev, SampleDivisorNMinusOne) {
  // {2, 4, 4, 4, 5, 5, 7, 9}: mean 5, squared deviations sum 32, 32 / 7.
  EXPECT_DOUBLE_EQ(stddev({2, 4, 4, 4, 5, 5, 7, 9}), std::sqrt(32.0 / 7.0));
  EXPECT_DOUBLE_EQ(stddev({3.5}), 0.0);
  EXPECT_DOUBLE_EQ(stddev({1, 3}), std::sqrt(2.0));
  EXPECT_THROW(stddev({}), Error);
}

TEST(Perplexity, KnownDistribution) {
  // p = [1/2, 1/4, 1/8, 1/8] in every row; targets 0, 1, 2 -> nll = ln2, 2 ln2, 3 ln2.
  at::Tensor row = at::log(at::tensor({0.5, 0.25, 0.125, 0.125}, at::kDouble)) + 3.25;
  at::Tensor logits = row.unsqueeze(0).repeat({3, 1}).to(at::kFloat);
  auto nll = token_nll(logits, {0, 1, 2});
  ASSERT_EQ(nll.size(), 3u);
  EXPECT_NEAR(nll[0], std::log(2.0), 1e-6);
  EXPECT_NEAR(nll[1], 2 * std::log(2.0), 1e-6);
  EXPECT_NEAR(nll[2], 3 * std::log(2.0), 1e-6);
  EXPECT_NEAR(perplexity(nll), 4.0, 1e-5);  // exp(2 ln 2)
  // Equal logits over V tokens: perplexity V.
  at::Tensor flat = at::full({5, 37}, 1.7, at::kFloat);
  EXPECT_NEAR(perplexity(token_nll(flat, {0, 5, 9, 36, 20})), 37.0, 1e-4);
  EXPECT_THROW(token_nll(flat, {0, 1}), Error);            // 5 rows, 2 targets
  EXPECT_THROW(token_nll(flat, {0, 1, 2, 3, 37}), Error);  // id out of range
  EXPECT_THROW(perplexity({}), Error);
}

TEST(KlDivergence, IdenticalIsZeroAndShiftInvariant) {
  at::manual_seed(3);
  at::Tensor a = at::randn({7, 37}) * 3;
  for (double kl : kl_divergence_rows(a, a)) EXPECT_NEAR(kl, 0.0, 1e-12);
  for (double kl : kl_divergence_rows(a, a + 11.5)) EXPECT_NEAR(kl, 0.0, 1e-5);
}

TEST(KlDivergence, KnownPair) {
  // P = [0.5, 0.5], Q = [0.9, 0.1]: KL = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1).
  at::Tensor p = at::log(at::tensor({0.5, 0.5}, at::kDouble));
  at::Tensor q = at::log(at::tensor({0.9, 0.1}, at::kDouble));
  const double want = 0.5 * std::log(0.5 / 0.9) + 0.5 * std::log(0.5 / 0.1);
  EXPECT_NEAR(kl_divergence(p, q), want, 1e-12);
  EXPECT_NEAR(want, 0.5108256, 1e-6);
  EXPECT_GT(kl_divergence(q, p), 0.0);
  EXPECT_NE(kl_divergence(q, p), kl_divergence(p, q));  // not symmetric
}

TEST(KlDivergence, MatchesPlainLoopOnRandomLogits) {
  at::manual_seed(11);
  const int64_t n = 5, v = 53;
  at::Tensor a = at::randn({n, v}) * 2, b = at::randn({n, v}) * 2;
  auto got = kl_divergence_rows(a, b);
  at::Tensor ad = a.to(at::kDouble), bd = b.to(at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    double za = 0, zb = 0;
    for (int64_t j = 0; j < v; ++j) {
      za += std::exp(ad[i][j].item<double>());
      zb += std::exp(bd[i][j].item<double>());
    }
    double kl = 0;
    for (int64_t j = 0; j < v; ++j) {
      const double p = std::exp(ad[i][j].item<double>()) / za;
      const double q = std::exp(bd[i][j].item<double>()) / zb;
      kl += p * std::log(p / q);
    }
    EXPECT_NEAR(got[static_cast<size_t>(i)], kl, 1e-9) << "row " << i;
  }
  EXPECT_THROW(kl_divergence(a, b.narrow(1, 0, 50)), Error);
}

TEST(Top1Agreement, CountsMatchingArgmax) {
  at::Tensor ref =
      at::tensor({0.1, 2.0, 0.3, 5.0, 0.2, 0.1, 0.0, 0.0, 1.0}, at::kFloat).view({3, 3});
  at::Tensor hyp =
      at::tensor({0.1, 3.0, 0.3, 0.0, 4.0, 0.1, 0.5, 0.2, 0.9}, at::kFloat).view({3, 3});
  // row argmax: ref 1, 0, 2; hyp 1, 1, 2 -> 2 of 3 agree.
  EXPECT_NEAR(top1_agreement(ref, hyp), 2.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(top1_agreement(ref, ref), 1.0);
}

TEST(FirstDivergence, IndexOrMinusOne) {
  EXPECT_EQ(first_divergence({5, 6, 7}, {5, 6, 7}), -1);
  EXPECT_EQ(first_divergence({5, 6, 7}, {5, 9, 7}), 1);
  EXPECT_EQ(first_divergence({5, 6, 7}, {4, 6, 7}), 0);
  EXPECT_EQ(first_divergence({5, 6, 7}, {5, 6}), 2);
  EXPECT_EQ(first_divergence({}, {}), -1);
}

TEST(TextSimilarity, RougeLOfKnownSentences) {
  auto ref = split_words("the cat sat on the mat");
  auto hyp = split_words("  the cat on\tthe mat\n");
  EXPECT_EQ(lcs_length(ref, hyp), 5);
  // P = 5/5, R = 5/6 -> F1 = 10/11.
  EXPECT_NEAR(rouge_l_f1(ref, hyp), 10.0 / 11.0, 1e-12);
  EXPECT_EQ(lcs_length(std::string("ABCBDAB"), std::string("BDCABA")), 4);
  const std::vector<int64_t> a{1, 2, 3, 4}, b{9, 8};
  EXPECT_DOUBLE_EQ(rouge_l_f1(a, a), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l_f1(a, b), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l_f1(std::vector<int64_t>{}, std::vector<int64_t>{}), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l_f1(a, std::vector<int64_t>{}), 0.0);
  // tokens {1,2,3,4} vs {1,3,4,7,8}: LCS 3, P = 3/5, R = 3/4 -> F1 = 2/3.
  EXPECT_NEAR(rouge_l_f1(a, std::vector<int64_t>{1, 3, 4, 7, 8}), 2.0 / 3.0, 1e-12);
}

TEST(TextSimilarity, EditSimilarityOfKnownStrings) {
  EXPECT_EQ(edit_distance(std::string("kitten"), std::string("sitting")), 3);
  EXPECT_NEAR(edit_similarity(std::string("kitten"), std::string("sitting")), 4.0 / 7.0, 1e-12);
  EXPECT_EQ(edit_distance(std::string(""), std::string("abc")), 3);
  EXPECT_DOUBLE_EQ(edit_similarity(std::string(""), std::string("")), 1.0);
  const std::vector<int64_t> a{10, 20, 30, 40, 50}, b{10, 30, 40, 55, 50, 60};
  // delete 20, insert 55, insert 60 -> 3; max len 6.
  EXPECT_EQ(edit_distance(a, b), 3);
  EXPECT_NEAR(edit_similarity(a, b), 0.5, 1e-12);
}

TEST(BytesPerToken, IncludesScalesAndMetadata) {
  CacheStats s;
  s.tokens_seen = 100;
  s.tokens_stored = 40;
  s.payload_bytes = 6000;
  s.scale_bytes = 1000;
  s.residual_bytes = 500;
  s.metadata_bytes = 500;
  s.reserved_bytes = 99999;  // not holding tokens: excluded
  EXPECT_DOUBLE_EQ(bytes_per_token(s, 2), 8000.0 / 200.0);
  EXPECT_DOUBLE_EQ(bytes_per_stored_token(s, 2), 8000.0 / 80.0);
  EXPECT_DOUBLE_EQ(bytes_per_token(CacheStats{}, 1), 0.0);
  EXPECT_THROW(bytes_per_token(s, 0), Error);
  EXPECT_DOUBLE_EQ(to_mb(3 * 1048576.0), 3.0);
}
