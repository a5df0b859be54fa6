#include "eli/generator.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>

#include "decode_loop.h"
#include "eli/error.h"

namespace eli {

std::atomic<int64_t>& detail::graph_replays() {
  static std::atomic<int64_t> n{0};
  return n;
}

namespace {
using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
}  // namespace

void GenerationConfig::validate() const {
  ELI_CHECK(max_new_tokens >= 0, "GenerationConfig.max_new_tokens = {} must be >= 0",
            max_new_tokens);
  sampling.validate();
  cache.validate();
  quant.validate();
}

std::unique_ptr<KVCache> Generator::make_cache_for(const GenerationConfig& cfg,
                                                   int64_t batch) const {
  if (method_kind(cfg.method) == MethodKind::kRecompute) return nullptr;
  return make_cache(cfg.method, model_->shape(), batch, cfg.cache, cfg.quant, model_->dtype(),
                    model_->device());
}

GenerationResult Generator::generate(const std::vector<std::vector<int64_t>>& prompts,
                                     const GenerationConfig& cfg,
                                     const TokenCallback& on_token) const {
  cfg.validate();
  const GPT2Config& mc = model_->config();
  ELI_CHECK(!prompts.empty(), "generate: the batch of prompts is empty");
  const int64_t batch = static_cast<int64_t>(prompts.size());
  std::vector<int64_t> lens(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    lens[static_cast<size_t>(b)] = static_cast<int64_t>(prompts[static_cast<size_t>(b)].size());
    ELI_CHECK(lens[static_cast<size_t>(b)] > 0,
              "generate: prompt {} is empty (at least one token is needed)", b);
    for (int64_t id : prompts[static_cast<size_t>(b)]) {
      ELI_CHECK(id >= 0 && id < mc.vocab_size,
                "generate: prompt {} has token id {} out of range "
                "[0, {})",
                b, id, mc.vocab_size);
    }
  }
  const int64_t plen = *std::max_element(lens.begin(), lens.end());
  const bool ragged = std::any_of(lens.begin(), lens.end(), [&](int64_t n) { return n != plen; });
  // The last generated token is never fed back, so the model sees plen + max_new - 1 positions.
  const int64_t needed = plen + std::max(0, cfg.max_new_tokens - 1);
  ELI_CHECK(needed <= mc.n_positions,
            "generate: prompt of {} tokens + {} new tokens needs {} positions, but the model has "
            "n_positions = {}",
            plen, cfg.max_new_tokens, needed, mc.n_positions);

  c10::InferenceMode guard;
  GenerationResult res;
  res.tokens.assign(batch, {});
  if (cfg.max_new_tokens == 0) return res;

  std::unique_ptr<KVCache> cache = make_cache_for(cfg, batch);
  res.cache_name = cache ? cache->name() : "no_cache";
  // Right-padded with token 0 (never stored, never seen by a sequence's own queries).
  std::vector<int64_t> flat(static_cast<size_t>(batch * plen), 0);
  for (int64_t b = 0; b < batch; ++b) {
    std::copy(prompts[static_cast<size_t>(b)].begin(), prompts[static_cast<size_t>(b)].end(),
              flat.begin() + b * plen);
  }
  at::Tensor all_ids = at::tensor(flat, at::kLong).view({batch, plen});  // CPU
#ifdef ELI_WITH_CUDA
  if (cache && cfg.cuda_graph && model_->device().is_cuda()) {
    GenerationResult r = detail::generate_cuda(*model_, *cache, all_ids, lens, cfg, on_token);
    r.cache_name = res.cache_name;
    return r;
  }
#endif
  auto gen = at::make_generator<at::CPUGeneratorImpl>(cfg.sampling.seed);
  detail::TokenSink sink(res.tokens, cfg.stop_tokens, on_token);
  auto emit = [&](const at::Tensor& next_cpu) { sink.push(next_cpu.data_ptr<int64_t>()); };
  const std::vector<int64_t> zeros(static_cast<size_t>(batch), 0);
  const std::vector<int64_t> ones(static_cast<size_t>(batch), 1);
  std::vector<std::vector<int64_t>> seqs;  // no_cache, ragged: each sequence so far
  if (!cache && ragged) seqs = prompts;

  auto t0 = Clock::now();
  at::Tensor logits = ragged ? model_->forward_last(all_ids, zeros, lens, cache.get())
                             : model_->forward_last(all_ids, 0, cache.get());
  at::Tensor next = sample_next(logits, cfg.sampling, gen).contiguous();  // CPU int64 [B]
  res.timing.prefill_ms = ms_since(t0);
  emit(next);
  std::vector<int64_t> past = lens;  // positions each sequence holds before the fed-back token
  for (int step = 1; step < cfg.max_new_tokens && !sink.all_done(); ++step) {
    t0 = Clock::now();
    if (cache && ragged) {
      logits = model_->forward_last(next.view({batch, 1}), past, ones, cache.get());
    } else if (cache) {
      logits = model_->forward_last(next.view({batch, 1}), past[0], cache.get());
    } else if (ragged) {
      // Recompute every sequence from its first token, right-padded to the longest.
      std::vector<int64_t> cur(static_cast<size_t>(batch));
      int64_t longest = 0;
      for (int64_t b = 0; b < batch; ++b) {
        auto& sq = seqs[static_cast<size_t>(b)];
        sq.push_back(next.data_ptr<int64_t>()[b]);
        cur[static_cast<size_t>(b)] = static_cast<int64_t>(sq.size());
        longest = std::max(longest, cur[static_cast<size_t>(b)]);
      }
      std::vector<int64_t> ids(static_cast<size_t>(batch * longest), 0);
      for (int64_t b = 0; b < batch; ++b) {
        const auto& sq = seqs[static_cast<size_t>(b)];
        std::copy(sq.begin(), sq.end(), ids.begin() + b * longest);
      }
      logits = model_->forward_last(at::tensor(ids, at::kLong).view({batch, longest}), zeros, cur,
                                    nullptr);
    } else {
      all_ids = at::cat({all_ids, next.view({batch, 1})}, 1);
      logits = model_->forward_last(all_ids, 0, nullptr);
    }
    next = sample_next(logits, cfg.sampling, gen).contiguous();
    res.timing.decode_ms.push_back(ms_since(t0));
    for (auto& p : past) ++p;
    emit(next);
  }
  if (cache) res.cache_stats = cache->stats();
  return res;
}

}  // namespace eli
