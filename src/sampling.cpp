#include <ATen/ATen.h>

#include <limits>

#include "eli/error.h"
#include "eli/generator.h"
#include "eli/ops.h"

namespace eli {

void SamplingConfig::validate() const {
  ELI_CHECK(temperature >= 0.0f && temperature <= 100.0f,
            "SamplingConfig.temperature = {} (valid: 0 for greedy, or (0, 100])", temperature);
  ELI_CHECK(top_k >= 0, "SamplingConfig.top_k = {} must be >= 0 (0 = off)", top_k);
  ELI_CHECK(top_p > 0.0f && top_p <= 1.0f, "SamplingConfig.top_p = {} (valid: (0, 1])", top_p);
}

namespace {

/// Temperature, top-k and top-p applied to logits [B, V] (fp32): dropped tokens get -inf.
at::Tensor filtered(const at::Tensor& logits_in, const SamplingConfig& cfg) {
  at::Tensor logits = logits_in.to(at::kFloat) / cfg.temperature;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const int64_t vocab = logits.size(1);
  if (cfg.top_k > 0 && cfg.top_k < vocab) {
    const at::Tensor kth = std::get<0>(logits.topk(cfg.top_k, -1)).select(1, cfg.top_k - 1);
    logits = logits.masked_fill(logits < kth.unsqueeze(1), neg_inf);
  }
  if (cfg.top_p < 1.0f) {
    auto sorted = logits.sort(-1, /*descending=*/true);
    const at::Tensor& vals = std::get<0>(sorted);
    const at::Tensor& idx = std::get<1>(sorted);
    const at::Tensor cum = at::softmax(vals, -1).cumsum(-1);
    // Drop a token when the tokens before it already reach top_p (the first always stays).
    at::Tensor drop = (cum - at::softmax(vals, -1)) >= cfg.top_p;
    const at::Tensor drop_unsorted = at::zeros_like(drop).scatter(1, idx, drop);
    logits = logits.masked_fill(drop_unsorted, neg_inf);
  }
  return logits;
}

/// A 32-bit integer hash (lowbias32-like: xor-shift / multiply rounds) of int64 tensors holding
/// values in [0, 2^32), in int64 arithmetic whose products stay below 2^63.
at::Tensor hash32(at::Tensor x) {
  constexpr int64_t kMask = int64_t{0xFFFFFFFF};
  x = at::bitwise_xor(x, x.__rshift__(16));
  x = (x * int64_t{0x7feb352d}).bitwise_and(kMask);
  x = at::bitwise_xor(x, x.__rshift__(15));
  x = (x * int64_t{0x5bd1e995}).bitwise_and(kMask);
  return at::bitwise_xor(x, x.__rshift__(16));
}

}  // namespace

at::Tensor sample_next(const at::Tensor& logits_in, const SamplingConfig& cfg, at::Generator& gen) {
  ELI_CHECK(logits_in.dim() == 2, "sample_next: logits must be [batch, vocab], got {}-D",
            logits_in.dim());
  if (cfg.temperature == 0.0f) return logits_in.argmax(-1).to(at::kCPU);
  const at::Tensor logits = filtered(logits_in.to(at::kCPU), cfg);
  const at::Tensor probs = at::softmax(logits, -1);
  return at::multinomial(probs, 1, /*replacement=*/false, gen).squeeze(1);
}

at::Tensor sample_next_device(const at::Tensor& logits_in, const SamplingConfig& cfg,
                              const at::Tensor& step) {
  ELI_CHECK(logits_in.dim() == 2, "sample_next_device: logits must be [batch, vocab], got {}-D",
            logits_in.dim());
  ELI_CHECK(step.defined() && step.numel() == 1 && step.scalar_type() == at::kLong &&
                step.device() == logits_in.device(),
            "sample_next_device: step must be one int64 on the logits' device ({})",
            logits_in.device().str());
  if (cfg.temperature == 0.0f) return ops::argmax_rows(logits_in);
  const at::Tensor logits = filtered(logits_in, cfg);
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  constexpr int64_t kMask = int64_t{0xFFFFFFFF};
  const auto opts = logits.options().dtype(at::kLong);
  // Key of (seed, step): two hash rounds, then one per element over its (row, token) index.
  const int64_t seed_lo = static_cast<int64_t>(cfg.seed & 0xFFFFFFFFULL);
  const int64_t seed_hi = static_cast<int64_t>(cfg.seed >> 32);
  at::Tensor key = hash32(at::bitwise_xor(step.bitwise_and(kMask), seed_lo));
  key = hash32(at::bitwise_xor(key, seed_hi) + int64_t{0x9E3779B9}).bitwise_and(kMask);
  const at::Tensor idx = at::arange(rows * vocab, opts).view({rows, vocab});
  const at::Tensor bits = hash32(at::bitwise_xor(idx.bitwise_and(kMask), key));
  // 24 random bits -> u in (0, 1) exactly representable in fp32; Gumbel noise -log(-log u).
  const at::Tensor u = (bits.__rshift__(8).to(at::kFloat) + 0.5f) * (1.0f / 16777216.0f);
  const at::Tensor gumbel = -at::log(-at::log(u));
  return (logits + gumbel).argmax(-1);
}

}  // namespace eli
