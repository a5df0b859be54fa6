// Caches on CUDA: decode steps take the fused kernel (ops::decode_attention over the storage as
// stored) and must give the CPU fp32 logits of the same cache method on a small random GPT-2
// (head_dim 64) over 100 forced decode steps after a 40-token prefill (label gpu; skipped
// without a GPU).

#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "eli/cache/attend.h"
#include "eli/kv_cache.h"
#include "eli/model.h"
#include "eli/ops.h"

namespace eli {
namespace {

constexpr int64_t kBatch = 3, kPrompt = 40, kSteps = 100;

bool gpu_available() { return at::hasCUDA() && ops::has_cuda_ops(); }

const model::GPT2& tiny(at::Device device, at::ScalarType dtype) {
  // Same CPU generator for every device: identical weights.
  static const auto cfg = GPT2Config::named("L2-E128-H2-V1000-P512");
  static const model::GPT2 cpu = model::GPT2::random(cfg, 7, at::kCPU, at::kFloat);
  if (device.is_cpu()) return cpu;
  static const model::GPT2 f32 = model::GPT2::random(cfg, 7, at::Device(at::kCUDA, 0), at::kFloat);
  static const model::GPT2 f16 = model::GPT2::random(cfg, 7, at::Device(at::kCUDA, 0), at::kHalf);
  return dtype == at::kHalf ? f16 : f32;
}

// Small windows so that eviction, pooling and block tables are exercised within 140 tokens.
CacheConfig small_layouts() {
  CacheConfig c;
  c.window_size = 32;
  c.sink_tokens = 4;
  c.block_size = 16;
  c.chunk_size = 16;
  c.keep_last = 24;
  return c;
}

struct Trace {
  std::vector<at::Tensor> logits;  // per step [B, vocab] fp64 on CPU
  int64_t fused_steps = 0;         // layer-steps that took the fused path
};

Trace run(const std::string& method, at::Device device, at::ScalarType dtype, bool fused = true,
          bool fused_on_cpu = false) {
  const auto& m = tiny(device, dtype);
  cache::fused_decode_on_cpu() = fused_on_cpu;
  auto cache = make_cache(method, m.shape(), kBatch, small_layouts(), {}, dtype, device);
  cache::fused_decode_on_cpu() = false;
  at::manual_seed(1234);
  const at::Tensor ids = at::randint(0, 1000, {kBatch, kPrompt + kSteps}, at::kLong).to(device);
  cache::fused_decode_enabled() = fused;
  const int64_t before = cache::fused_decode_steps().load();
  Trace r;
  r.logits.push_back(
      m.forward_last(ids.narrow(1, 0, kPrompt), 0, cache.get()).to(at::kCPU, at::kDouble));
  for (int64_t s = 0; s < kSteps; ++s) {
    r.logits.push_back(m.forward_last(ids.narrow(1, kPrompt + s, 1), kPrompt + s, cache.get())
                           .to(at::kCPU, at::kDouble));
  }
  r.fused_steps = cache::fused_decode_steps().load() - before;
  cache::fused_decode_enabled() = true;
  return r;
}

struct Diff {
  double rel = 0, abs = 0;  // worst step: ||a - b|| / ||b||, and the worst element
  int64_t step = -1;
};

Diff compare(const Trace& got, const Trace& want) {
  Diff d;
  EXPECT_EQ(got.logits.size(), want.logits.size());
  for (size_t i = 0; i < got.logits.size() && i < want.logits.size(); ++i) {
    const at::Tensor e = got.logits[i] - want.logits[i];
    const double rel = (e.norm() / want.logits[i].norm()).item<double>();
    const double ab = e.abs().max().item<double>();
    if (!(rel <= d.rel)) {  // NaN counts as worst
      d.rel = rel;
      d.step = static_cast<int64_t>(i);
    }
    if (!(ab <= d.abs)) d.abs = ab;
  }
  return d;
}

struct Method {
  std::string spec;
  bool fused;  // false: documented to stay on the ATen path
};

class CacheCuda : public ::testing::TestWithParam<Method> {};

TEST_P(CacheCuda, FusedDecodeMatchesCpu) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA device or CUDA ops not built";
  const std::string method = GetParam().spec;
  const int64_t want_fused = GetParam().fused ? kSteps * 2 : 0;
  const at::Device cuda(at::kCUDA, 0);
  const Trace cpu = run(method, at::kCPU, at::kFloat);
  ASSERT_EQ(cpu.fused_steps, 0) << "the CPU never takes the fused path";

  const Trace f32 = run(method, cuda, at::kFloat);
  const Trace f32_aten = run(method, cuda, at::kFloat, /*fused=*/false);
  const Trace f16 = run(method, cuda, at::kHalf);
  const Trace f16_aten = run(method, cuda, at::kHalf, /*fused=*/false);
  EXPECT_EQ(f32.fused_steps, want_fused) << "every decode step of both layers is fused";
  EXPECT_EQ(f16.fused_steps, want_fused);
  EXPECT_EQ(f32_aten.fused_steps, 0);

  const Diff a = compare(f32, cpu), b = compare(f32, f32_aten), c = compare(f16, cpu),
             e = compare(f16_aten, cpu);
  std::printf(
      "[cache cuda] %-40s fp32 fused vs cpu rel %.2e (abs %.2e, step %lld) | vs cuda aten "
      "%.2e | fp16 fused vs cpu fp32 rel %.2e (abs %.2e) | fp16 aten vs cpu %.2e\n",
      method.c_str(), a.rel, a.abs, static_cast<long long>(a.step), b.rel, c.rel, c.abs, e.rel);
  // fp32: the same codes as the CPU (bit-exact quantizers); only summation order differs.
  EXPECT_LE(a.rel, 1e-3) << method << " fp32 CUDA vs CPU, worst step " << a.step;
  EXPECT_LE(b.rel, 1e-3) << method << " fp32 fused vs CUDA ATen, worst step " << b.step;
  // fp16 model: rounding of activations and stored values; no worse than a loose bound and
  // than twice the ATen path's own fp16 error (+ slack).
  EXPECT_LE(c.rel, 5e-2) << method << " fp16 CUDA vs CPU fp32, worst step " << c.step;
  EXPECT_LE(c.rel, 2 * e.rel + 1e-2) << method << " fp16 fused vs fp16 ATen error";
}

// The fused path's decomposition (regions, masks, biases, residual ring, rotation, merges) run
// through the CPU decode kernel (ops::decode_attention on CPU tensors): it must equal the ATen path
// on the same CPU cache. Needs no GPU; it is here because it tests the same path.
TEST_P(CacheCuda, FusedDecompositionOnCpuMatchesAten) {
  const std::string method = GetParam().spec;
  const Trace aten = run(method, at::kCPU, at::kFloat);
  const Trace fused = run(method, at::kCPU, at::kFloat, true, /*fused_on_cpu=*/true);
  EXPECT_EQ(aten.fused_steps, 0);
  EXPECT_EQ(fused.fused_steps, GetParam().fused ? kSteps * 2 : 0);
  const Diff d = compare(fused, aten);
  std::printf("[cache fused on cpu] %-40s rel %.2e (abs %.2e, step %lld)\n", method.c_str(), d.rel,
              d.abs, static_cast<long long>(d.step));
  // fp32 rounding differs (fp64 reference kernel vs fp32 ATen), and a quantized cache may flip
  // the odd code at a rounding boundary (per_tensor: seen 1.5e-5); a wrong mask gives > 1e-2.
  EXPECT_LE(d.rel, 1e-4) << method << " worst step " << d.step;
}

INSTANTIATE_TEST_SUITE_P(
    Methods, CacheCuda,
    ::testing::Values(
        Method{"full_cache", true}, Method{"quant_int8", true}, Method{"quant_int4", true},
        Method{"quant_mixed", true}, Method{"paged_attention", true}, Method{"chunked_cache", true},
        Method{"sliding_window", true}, Method{"full+int4+residual=16", true},
        Method{"full+int8+rotate", true}, Method{"paged+mixed+residual=8+rotate", true},
        Method{"sliding_window+int8", true},
        Method{"chunked(chunk=16,keep=24,bias=0)+int4/zp", true},
        Method{"chunked(chunk=8,keep=0)+int8", true}, Method{"full+int8/per_tensor", true},
        Method{"full+k:int4,v:fp+rotate", true}, Method{"sliding_window+int4+residual=8", false},
        Method{"full+k:int8,v:fp+residual=8", false}),
    [](const ::testing::TestParamInfo<Method>& info) {
      std::string n;
      for (char ch : info.param.spec) {
        n += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
      }
      return n + "_" + std::to_string(info.index);
    });

}  // namespace
}  // namespace eli
