// Parity with HF transformers at the GPT-2 124M shape (random weights), fp32 and fp16 on CUDA.
// The checkpoint and reference logits come from `tools/hf_reference.py gpt2 DIR` on the GPU
// machine; set ELI_HF_GPT2_DIR=DIR. Skipped without a GPU or without that directory.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "eli/kv_cache.h"
#include "eli/model.h"
#include "eli/safetensors.h"

namespace {

void check(at::ScalarType dtype, const char* key, double tol) {
  const char* dir = std::getenv("ELI_HF_GPT2_DIR");
  if (!at::hasCUDA() || dir == nullptr) GTEST_SKIP() << "needs a GPU and ELI_HF_GPT2_DIR";
  const auto m = eli::model::GPT2::load(dir, at::Device(at::kCUDA, 0), dtype);
  const auto ref = eli::safetensors::File::open(std::string(dir) + "/reference.safetensors");
  for (int i = 0; i < 3; ++i) {
    const at::Tensor ids = ref.tensor(fmt::format("ids_{}", i)).to(at::kLong).unsqueeze(0);
    const at::Tensor want = ref.tensor(fmt::format("{}_{}", key, i)).to(at::kDouble);
    const at::Tensor got = m.forward(ids, 0, nullptr)[0].to(at::kCPU, at::kDouble);
    double err = (got - want).abs().max().item<double>();
    if (dtype == at::kHalf) {
      // flash-attention's rule: our fp16 error against HF's fp32 logits may be at most twice
      // HF's own fp16 error against them. `tol` is then the slack on top.
      const at::Tensor ref32 = ref.tensor(fmt::format("logits_{}", i)).to(at::kDouble);
      const double ours = (got - ref32).abs().max().item<double>();
      const double hf = (want - ref32).abs().max().item<double>();
      std::printf("[parity fp16] sequence %d: ours vs fp32 %.3g, HF fp16 vs fp32 %.3g\n", i, ours,
                  hf);
      EXPECT_LE(ours, 2 * hf + 1e-3) << "sequence " << i;
    }
    const double rel = ((got - want).norm() / want.norm()).item<double>();
    std::printf("[parity %s] sequence %d (%lld tokens): max abs err %.3g, rel %.3g\n", key, i,
                static_cast<long long>(ids.size(1)), err, rel);
    EXPECT_LT(err, tol) << key << " sequence " << i;
    // And through the full cache, token by token after a prefill of half the sequence.
    auto cache = eli::make_cache("full_cache", m.shape(), 1, {}, {}, dtype, m.device());
    const int64_t half = std::max<int64_t>(1, ids.size(1) / 2);
    m.forward(ids.narrow(1, 0, half), 0, cache.get());
    for (int64_t t = half; t < ids.size(1); ++t) {
      const at::Tensor step =
          m.forward(ids.narrow(1, t, 1), t, cache.get())[0][0].to(at::kCPU, at::kDouble);
      ASSERT_LT((step - want[t]).abs().max().item<double>(), tol) << key << " pos " << t;
    }
  }
}

}  // namespace

TEST(GpuHFParity, Gpt2Fp32) { check(at::kFloat, "logits", 1e-3); }
TEST(GpuHFParity, Gpt2Fp16) { check(at::kHalf, "logits_fp16", 0.25); }
