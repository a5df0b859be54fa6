// The fused GPT-2 stages on CUDA (ops::bias_residual_layernorm, embed_layernorm, argmax_rows,
// linear's skinny-product kernel, merge_attention) against
// their ATen specification (ops::ref) in fp64 on the CPU, on random inputs of awkward widths
// (label gpu; skipped without a GPU).

#include <gtest/gtest.h>

#include <cmath>

#include "eli/error.h"
#include "eli/ops.h"
#include "ops/ref.h"
#include "ops_test_util.h"

namespace eli {
namespace {

bool gpu_available() { return at::hasCUDA() && ops::has_cuda_ops(); }

// max |a - b| / max(1, max |b|) and where.
std::pair<double, int64_t> worst(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor diff = (a.to(at::kDouble).cpu() - b.to(at::kDouble).cpu()).abs().reshape(-1);
  const int64_t i = diff.argmax().item<int64_t>();
  const double scale = std::max(1.0, b.to(at::kDouble).abs().max().item<double>());
  return {diff[i].item<double>() / scale, i};
}

class LayerFused : public ::testing::TestWithParam<std::tuple<int64_t, at::ScalarType>> {};

TEST_P(LayerFused, MatchesTheAtenSequence) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const auto [n, dtype] = GetParam();
  const double tol = dtype == at::kHalf ? 1e-2 : 1e-5;
  const auto dev = at::TensorOptions().device(at::kCUDA).dtype(dtype);
  at::manual_seed(n);
  for (int64_t rows : {1, 3, 37}) {
    at::Tensor x = at::randn({rows, 1, n}, dev), y = at::randn({rows, 1, n}, dev);
    const at::Tensor bias = at::randn({n}, dev), w = at::randn({n}, dev), b = at::randn({n}, dev);
    at::Tensor x64 = x.to(at::kCPU, at::kDouble);
    const at::Tensor want = ops::ref::bias_residual_layernorm(
        x64, y.to(at::kCPU, at::kDouble), bias.to(at::kCPU, at::kDouble),
        w.to(at::kCPU, at::kDouble), b.to(at::kCPU, at::kDouble), 1e-5);
    const at::Tensor got = ops::bias_residual_layernorm(x, y, bias, w, b, 1e-5);
    auto [ex, ix] = worst(x, x64);
    EXPECT_LE(ex, tol) << "residual stream, n " << n << " rows " << rows << " worst element " << ix;
    auto [eo, io] = worst(got, want);
    EXPECT_LE(eo, tol) << "layernorm, n " << n << " rows " << rows << " worst element " << io;
  }
}

INSTANTIATE_TEST_SUITE_P(Widths, LayerFused,
                         ::testing::Combine(::testing::Values<int64_t>(1, 97, 768, 1600, 5000),
                                            ::testing::Values(at::kFloat, at::kHalf)));

TEST(LayerFused, EmbeddingAndFirstLayerNormMatchAten) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  for (auto dtype : {at::kFloat, at::kHalf}) {
    const double tol = dtype == at::kHalf ? 1e-2 : 1e-5;
    const auto dev = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    at::manual_seed(3);
    const at::Tensor wte = at::randn({1000, 97}, dev), wpe = at::randn({300, 97}, dev);
    const at::Tensor w = at::randn({97}, dev), b = at::randn({97}, dev);
    const at::Tensor ids = at::randint(0, 1000, {3, 17}, dev.dtype(at::kLong));
    const at::Tensor pos0 = at::full({1}, 41, dev.dtype(at::kLong));
    const auto got = ops::embed_layernorm(wte, wpe, ids, pos0, w, b, 1e-5);
    auto cpu64 = [](const at::Tensor& t) { return t.to(at::kCPU, at::kDouble); };
    const auto want = ops::ref::embed_layernorm(cpu64(wte), cpu64(wpe), ids.cpu(), pos0.cpu(),
                                                cpu64(w), cpu64(b), 1e-5);
    auto [ex, ix] = worst(got.first, want.first);
    EXPECT_LE(ex, tol) << "embedding, worst element " << ix;
    auto [ea, ia] = worst(got.second, want.second);
    EXPECT_LE(ea, tol) << "layernorm, worst element " << ia;
  }
}

TEST(LayerFused, ArgmaxMatchesAtenWithTiesAndNan) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  at::manual_seed(5);
  // Odd widths put rows at every 16-byte misalignment (the kernel reads whole vectors between
  // a scalar head and tail); the extremes sit in the head, the body and the tail.
  for (auto dtype : {at::kHalf, at::kFloat}) {
    const auto dev = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    for (int64_t n : {1, 7, 9, 31, 1000, 50257}) {
      at::Tensor x = at::randn({6, n}, dev);
      x[1].fill_(0.5);                           // all tied: index 0
      if (n > 7) x[2][n - 3] = x[2][5] = 100.0;  // two maxima: the lower index
      if (n > 9) x[3][9] = std::nan("");         // NaN counts as largest
      x[4][n - 1] = 100.0;                       // the last element (tail)
      x[5][0] = 100.0;                           // the first (head)
      const at::Tensor got = ops::argmax_rows(x).cpu();
      const at::Tensor want = x.to(at::kCPU, at::kFloat).argmax(-1);
      EXPECT_TRUE(at::equal(got, want))
          << c10::toString(dtype) << " n " << n << ": " << got << " vs " << want;
    }
  }
}

// Long rows cut into parts over several blocks and merged (1 and 32 rows of 50257 logits, a
// decode step's): the maximum in the first, a middle and the last part, and a NaN.
TEST(LayerFused, ArgmaxOfLongRowsInPartsMatchesAten) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  at::manual_seed(6);
  for (auto dtype : {at::kHalf, at::kFloat}) {
    const auto dev = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    for (int64_t rows : {1, 32}) {
      for (int64_t n : {50257, 20000}) {
        for (int64_t at_i : {int64_t(3), n / 2 + 1, n - 2}) {
          at::Tensor x = at::randn({rows, n}, dev);
          x.select(1, at_i).fill_(50.0);
          if (rows > 1) x[rows - 1][n / 3] = std::nan("");
          const at::Tensor got = ops::argmax_rows(x).cpu();
          const at::Tensor want = x.to(at::kCPU, at::kFloat).argmax(-1);
          EXPECT_TRUE(at::equal(got, want))
              << c10::toString(dtype) << " rows " << rows << " n " << n << " max at " << at_i;
        }
      }
    }
  }
}

// Decode-step products (<= 8 rows: the weight-streaming kernel; 9 .. 32 fp16 rows: the tensor-core
// kernel, K long enough to wrap its ring of W chunks) and a prefill-sized one (ATen), every
// epilogue.
TEST(LayerFused, LinearMatchesAten) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  for (auto dtype : {at::kFloat, at::kHalf}) {
    const double tol = dtype == at::kHalf ? 1e-2 : 1e-5;
    const auto dev = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    at::manual_seed(9);
    for (int64_t k : {8, 104, 768, 3072, 6400}) {
      for (int64_t n : {1, 97, 2304}) {
        const at::Tensor w = at::randn({n, k}, dev) / std::sqrt(double(k)), b = at::randn({n}, dev);
        for (int64_t rows : {1, 3, 8, 9, 17, 32}) {
          const at::Tensor x = at::randn({rows, 1, k}, dev);
          for (bool with_bias : {false, true}) {
            for (bool gelu : {false, true}) {
              const at::Tensor bias = with_bias ? b : at::Tensor();
              const at::Tensor got = ops::linear(x, w, bias, gelu);
              const at::Tensor want =
                  ops::ref::linear(x.to(at::kCPU, at::kDouble), w.to(at::kCPU, at::kDouble),
                                   with_bias ? b.to(at::kCPU, at::kDouble) : at::Tensor(), gelu);
              ASSERT_EQ(got.sizes(), want.sizes());
              if (rows > 8) {  // the same rows as one prompt (cuBLAS: see ops::linear)
                const at::Tensor prompt = ops::linear(x.view({1, rows, k}), w, bias, gelu);
                auto [ep, ip] = worst(prompt.view(got.sizes()), want);
                EXPECT_LE(ep, tol) << "prompt-shaped k " << k << " n " << n << " rows " << rows
                                   << " worst element " << ip;
              }
              auto [e, i] = worst(got, want);
              EXPECT_LE(e, tol) << "k " << k << " n " << n << " rows " << rows << " bias "
                                << with_bias << " gelu " << gelu << " worst element " << i;
            }
          }
        }
      }
    }
  }
}

// 9 .. 32 rows into many output columns (gemm_rows_mma_wide_kernel: the logits product), with a
// ragged last tile, every epilogue, against the fp64 reference.
TEST(LayerFused, WideLinearMatchesAten) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const auto dev = at::TensorOptions().device(at::kCUDA).dtype(at::kHalf);
  at::manual_seed(41);
  const int64_t n = 20001;
  for (int64_t k : {32, 96, 768, 1600}) {  // fewer chunks than the ring holds, and more
    const at::Tensor w = at::randn({n, k}, dev) / std::sqrt(double(k)), b = at::randn({n}, dev);
    for (int64_t rows : {9, 17, 32}) {
      const at::Tensor x = at::randn({rows, 1, k}, dev);
      for (bool gelu : {false, true}) {
        const at::Tensor got = ops::linear(x, w, b, gelu);
        const at::Tensor want =
            ops::ref::linear(x.to(at::kCPU, at::kDouble), w.to(at::kCPU, at::kDouble),
                             b.to(at::kCPU, at::kDouble), gelu);
        auto [e, i] = worst(got, want);
        EXPECT_LE(e, 1e-2) << "k " << k << " rows " << rows << " gelu " << gelu << " worst element "
                           << i;
      }
    }
  }
}

// The head split of a QKV output: the same bits as ATen's views + copies, output poisoned first.
TEST(LayerFused, SplitHeadsMatchesAtenViews) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  struct Shape {
    int64_t b, t, h, d;
  };
  for (auto dtype : {at::kFloat, at::kHalf}) {
    const auto dev = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    for (Shape s : {Shape{1, 1, 12, 64}, Shape{32, 1, 12, 64}, Shape{3, 7, 5, 128},
                    Shape{2, 130, 25, 64}, Shape{1, 9, 1, 8}}) {
      if (s.d * at::elementSize(dtype) % 16 != 0) continue;
      at::manual_seed(s.b * 131 + s.t);
      const at::Tensor qkv = at::randn({s.b, s.t, 3 * s.h * s.d}, dev);
      const auto [q, k, v] = ops::split_heads(qkv, s.h);
      const auto [wq, wk, wv] = ops::ref::split_heads(qkv.cpu(), s.h);
      for (const auto& [got, want] : {std::pair{q, wq}, std::pair{k, wk}, std::pair{v, wv}}) {
        ASSERT_EQ(got.sizes(), want.sizes());
        EXPECT_TRUE(got.is_contiguous());
        EXPECT_TRUE(at::equal(got.cpu(), want))
            << s.b << " x " << s.t << " x " << s.h << " x " << s.d;
      }
    }
  }
}

// The QKV product of one token a row stored straight into q, k and v: the same bits as the
// product, then the head split (1 .. 8 rows: the weight-streaming kernel; 9 .. 32 fp16: the
// tensor-core kernel), and a prompt (linear, then split_heads).
TEST(LayerFused, QkvHeadsMatchesLinearThenSplitHeads) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  for (auto dtype : {at::kFloat, at::kHalf}) {
    const auto dev = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    at::manual_seed(31);
    for (const int64_t h : {12, 25}) {
      const int64_t d = 64, k = h * d;
      const at::Tensor w = at::randn({3 * k, k}, dev) / std::sqrt(double(k));
      const at::Tensor bias = at::randn({3 * k}, dev);
      for (const int64_t rows : {1, 2, 3, 8, 9, 17, 32}) {
        for (const int64_t t : {int64_t(1), int64_t(5)}) {
          const at::Tensor x = at::randn({rows, t, k}, dev);
          const auto [q, kk, v] = ops::qkv_heads(x, w, bias, h);
          const auto [wq, wk, wv] = ops::split_heads(ops::linear(x, w, bias), h);
          for (const auto& [got, want] : {std::pair{q, wq}, std::pair{kk, wk}, std::pair{v, wv}}) {
            ASSERT_EQ(got.sizes(), want.sizes());
            EXPECT_TRUE(got.is_contiguous());
            EXPECT_TRUE(at::equal(got, want))
                << c10::toString(dtype) << " heads " << h << " rows " << rows << " tokens " << t;
          }
        }
      }
    }
  }
}

// Two partial attentions merged in one launch: ATen's values for the same sequence of fp32
// operations (ops::ref on the GPU), and exactly the other side where one side has no keys, zeros
// and -inf where neither has.
TEST(LayerFused, MergeAttentionMatchesAten) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  for (auto dtype : {at::kFloat, at::kHalf}) {
    const auto dev = at::TensorOptions().device(at::kCUDA);
    at::manual_seed(41);
    for (const int64_t d : {64, 128}) {
      const int64_t b = 5, h = 7;
      const at::Tensor o1 = at::randn({b, h, 1, d}, dev.dtype(dtype));
      const at::Tensor o2 = at::randn({b, h, 1, d}, dev.dtype(dtype));
      at::Tensor l1 = 8 * at::randn({b, h}, dev.dtype(at::kFloat));
      at::Tensor l2 = 8 * at::randn({b, h}, dev.dtype(at::kFloat));
      l1.select(0, 1).fill_(-INFINITY);  // sequence 1: no keys on side 1
      l1.select(0, 2).fill_(-INFINITY);  // sequence 2: none on either side
      l2.select(0, 2).fill_(-INFINITY);
      const auto [o, lse] = ops::merge_attention(o1, l1, o2, l2);
      const auto [want_o, want_lse] = ops::ref::merge_attention(o1, l1, o2, l2);
      const std::string what = std::string(c10::toString(dtype)) + " D " + std::to_string(d);
      ASSERT_TRUE(o.is_cuda() && lse.is_cuda()) << what;
      ASSERT_EQ(o.sizes(), o1.sizes()) << what;
      ASSERT_EQ(o.scalar_type(), dtype) << what;
      // fp16: one rounding of the fp32 result, which may fall either side of a tie.
      EXPECT_TRUE(ops::testing::all_close(o, want_o, 1e-6, dtype == at::kHalf ? 1e-3 : 1e-6))
          << what;
      EXPECT_TRUE(ops::testing::all_close(lse, want_lse, 1e-6, 1e-6)) << what;
      EXPECT_TRUE(at::equal(o.select(0, 1), o2.select(0, 1))) << what;
      EXPECT_TRUE(at::equal(lse.select(0, 1), l2.select(0, 1))) << what;
      EXPECT_TRUE(at::equal(o.select(0, 2), at::zeros_like(o.select(0, 2)))) << what;
      EXPECT_TRUE((lse.select(0, 2) == -INFINITY).all().item<bool>()) << what;
    }
  }
}

TEST(LayerFusedErrors, BadShapesAreErrors) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const auto dev = at::TensorOptions().device(at::kCUDA).dtype(at::kHalf);
  at::Tensor x = at::randn({2, 8}, dev);
  EXPECT_THROW(ops::bias_residual_layernorm(x, at::randn({2, 7}, dev), at::randn({8}, dev),
                                            at::randn({8}, dev), at::randn({8}, dev), 1e-5),
               Error);
  EXPECT_THROW(ops::linear(x, at::randn({5, 8}, dev), at::randn({4}, dev)), Error);
  const at::Tensor x32 = at::randn({32, 1, 64}, dev);  // past the kernels: cuBLAS's paths
  EXPECT_THROW(ops::linear(x32, at::randn({5, 64}, dev), at::randn({4}, dev), true), Error);
  EXPECT_THROW(ops::linear(x32, at::randn({5, 63}, dev), {}, false), Error);
  EXPECT_THROW(ops::split_heads(at::randn({2, 1, 100}, dev), 12), Error);  // 100 != 3 * 12 * d
  EXPECT_THROW(ops::split_heads(at::randn({2, 36}, dev), 12), Error);      // not [B, T, 3E]
  const at::Tensor x3 = at::randn({4, 1, 64}, dev);
  EXPECT_THROW(ops::qkv_heads(x3, at::randn({190, 64}, dev), {}, 1), Error);  // 190 != 3 x d
  EXPECT_THROW(ops::qkv_heads(x3, at::randn({192, 64}, dev), at::randn({191}, dev), 1), Error);
  const auto [q, k, v] = ops::qkv_heads(x3, at::randn({192, 64}, dev), {}, 1);  // and then works
  EXPECT_EQ(q.sizes(), (std::vector<int64_t>{4, 1, 1, 64}));
}

}  // namespace
}  // namespace eli
