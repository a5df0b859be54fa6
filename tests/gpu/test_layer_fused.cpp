// The fused GPT-2 block stages on CUDA (ops::bias_residual_layernorm, ops::bias_gelu_) against
// their ATen specification (ops::ref) in fp64 on the CPU, on random inputs of awkward widths
// (label gpu; skipped without a GPU).

#include <gtest/gtest.h>

#include "eli/error.h"
#include "eli/ops.h"

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

    at::Tensor g = at::randn({rows, 1, n}, dev);
    at::Tensor g64 = g.to(at::kCPU, at::kDouble);
    ops::ref::bias_gelu_(g64, bias.to(at::kCPU, at::kDouble));
    ops::bias_gelu_(g, bias);
    auto [eg, ig] = worst(g, g64);
    EXPECT_LE(eg, tol) << "bias_gelu, n " << n << " rows " << rows << " worst element " << ig;
  }
}

INSTANTIATE_TEST_SUITE_P(Widths, LayerFused,
                         ::testing::Combine(::testing::Values<int64_t>(1, 97, 768, 1600, 5000),
                                            ::testing::Values(at::kFloat, at::kHalf)));

TEST(LayerFusedErrors, BadShapesAreErrors) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA GPU";
  const auto dev = at::TensorOptions().device(at::kCUDA).dtype(at::kHalf);
  at::Tensor x = at::randn({2, 8}, dev);
  EXPECT_THROW(ops::bias_residual_layernorm(x, at::randn({2, 7}, dev), at::randn({8}, dev),
                                            at::randn({8}, dev), at::randn({8}, dev), 1e-5),
               Error);
  EXPECT_THROW(ops::bias_gelu_(x, at::randn({7}, dev)), Error);
  EXPECT_THROW(ops::bias_gelu_(x, at::randn({8}, dev.dtype(at::kFloat))), Error);
}

}  // namespace
}  // namespace eli
