#include "eli/benchmark/quality.h"

#include <c10/core/InferenceMode.h>

#include "eli/error.h"

namespace eli::benchmark {

std::vector<int64_t> stream_targets(const std::vector<int64_t>& ids, int64_t prefix) {
  ELI_CHECK(prefix >= 1 && prefix < static_cast<int64_t>(ids.size()),
            "stream: prefix = {} must be in [1, {}) (the stream has {} tokens)", prefix, ids.size(),
            ids.size());
  return {ids.begin() + prefix, ids.end()};
}

at::Tensor stream_logits(const model::GPT2& model, const std::vector<int64_t>& ids, int64_t prefix,
                         const GenerationConfig& cfg) {
  const int64_t n = static_cast<int64_t>(ids.size());
  stream_targets(ids, prefix);  // validates prefix
  ELI_CHECK(n <= model.config().n_positions,
            "stream_logits: {} tokens exceed the model's n_positions = {}", n,
            model.config().n_positions);
  c10::InferenceMode guard;
  const at::Tensor all = at::tensor(ids, at::kLong).view({1, n}).to(model.device());
  if (method_kind(cfg.method) == MethodKind::kRecompute) {
    at::Tensor logits = model.forward(all.narrow(1, 0, n - 1), 0, nullptr);  // [1, n-1, V]
    return logits[0].narrow(0, prefix - 1, n - prefix).to(at::kCPU, at::kFloat);
  }
  const Generator gen(model);
  std::unique_ptr<KVCache> cache = gen.make_cache_for(cfg, 1);
  std::vector<at::Tensor> rows;
  rows.reserve(static_cast<size_t>(n - prefix));
  rows.push_back(model.forward_last(all.narrow(1, 0, prefix), 0, cache.get()));
  for (int64_t t = prefix; t < n - 1; ++t) {
    rows.push_back(model.forward_last(all.narrow(1, t, 1), t, cache.get()));
  }
  return at::cat(rows, 0).to(at::kCPU, at::kFloat);
}

}  // namespace eli::benchmark
