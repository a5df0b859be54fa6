#include <ATen/ATen.h>

#include <limits>

#include "eli/error.h"
#include "eli/generator.h"

namespace eli {

void SamplingConfig::validate() const {
  ELI_CHECK(temperature >= 0.0f && temperature <= 100.0f,
            "SamplingConfig.temperature = {} (valid: 0 for greedy, or (0, 100])", temperature);
  ELI_CHECK(top_k >= 0, "SamplingConfig.top_k = {} must be >= 0 (0 = off)", top_k);
  ELI_CHECK(top_p > 0.0f && top_p <= 1.0f, "SamplingConfig.top_p = {} (valid: (0, 1])", top_p);
}

at::Tensor sample_next(const at::Tensor& logits_in, const SamplingConfig& cfg, at::Generator& gen) {
  ELI_CHECK(logits_in.dim() == 2, "sample_next: logits must be [batch, vocab], got {}-D",
            logits_in.dim());
  if (cfg.temperature == 0.0f) return logits_in.argmax(-1).to(at::kCPU);
  at::Tensor logits = logits_in.to(at::kCPU, at::kFloat) / cfg.temperature;
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
  const at::Tensor probs = at::softmax(logits, -1);
  return at::multinomial(probs, 1, /*replacement=*/false, gen).squeeze(1);
}

}  // namespace eli
