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

namespace detail {

Prefill prefill(const model::GPT2& model, KVCache* cache,
                const std::vector<std::vector<int64_t>>& prompts) {
  const int64_t batch = static_cast<int64_t>(prompts.size());
  std::vector<int64_t> lens;
  for (const auto& p : prompts) lens.push_back(static_cast<int64_t>(p.size()));
  // Rows `seqs` of the batch from position from[i] on, right-padded with token 0.
  auto rows = [&](const std::vector<int64_t>& seqs, const std::vector<int64_t>& from) {
    int64_t t = 1;
    for (size_t i = 0; i < seqs.size(); ++i) t = std::max(t, lens[seqs[i]] - from[i]);
    std::vector<int64_t> flat(seqs.size() * static_cast<size_t>(t), 0);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const auto& p = prompts[static_cast<size_t>(seqs[i])];
      std::copy(p.begin() + from[i], p.end(), flat.begin() + static_cast<int64_t>(i) * t);
    }
    return at::tensor(flat, at::kLong).view({static_cast<int64_t>(seqs.size()), t});
  };
  Prefill r;
  const int64_t bs = cache ? cache->prefix_block() : 0;
  std::vector<int64_t> all(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) all[static_cast<size_t>(b)] = b;
  const std::vector<int64_t> zeros(static_cast<size_t>(batch), 0);
  if (bs == 0) {  // no prefix reuse: every prompt position is computed, in one pass
    for (int64_t n : lens) r.computed += n;
    const bool ragged =
        std::any_of(lens.begin(), lens.end(), [&](int64_t n) { return n != lens[0]; });
    const at::Tensor ids = rows(all, zeros);
    r.logits =
        ragged ? model.forward_last(ids, zeros, lens, cache) : model.forward_last(ids, 0, cache);
    return r;
  }
  auto common = [&](int64_t a, int64_t b) {
    const auto& x = prompts[static_cast<size_t>(a)];
    const auto& y = prompts[static_cast<size_t>(b)];
    return static_cast<int64_t>(
        std::mismatch(x.begin(), x.begin() + std::min(x.size(), y.size()), y.begin()).first -
        x.begin());
  };
  std::vector<int64_t> held(static_cast<size_t>(batch), 0), pending = all;
  while (!pending.empty()) {
    for (int64_t b : pending) held[b] += cache->reuse_prefix(b, prompts[static_cast<size_t>(b)]);
    std::vector<int64_t> wave, later;
    for (int64_t b : pending) {
      // b waits when an earlier sequence of this wave computes (and publishes) the block b
      // would take next.
      const int64_t next = held[b] + bs;
      bool wait = false;
      for (int64_t a : wave) {
        if (next <= lens[b] - 1 && lens[a] >= next && common(a, b) >= next) wait = true;
      }
      (wait ? later : wave).push_back(b);
    }
    std::vector<int64_t> past, n;
    for (int64_t a : wave) {
      past.push_back(held[a]);
      n.push_back(lens[a] - held[a]);
      r.computed += lens[a] - held[a];
      r.reused += held[a];
    }
    const at::Tensor logits = model.forward_last(rows(wave, past), past, n, cache,
                                                 wave == all ? std::vector<int64_t>{} : wave);
    if (!r.logits.defined()) r.logits = at::empty({batch, logits.size(1)}, logits.options());
    r.logits.index_copy_(0, at::tensor(wave, at::kLong).to(logits.device()), logits);
    for (int64_t a : wave) cache->publish_prefix(a, prompts[static_cast<size_t>(a)]);
    pending = std::move(later);
  }
  return r;
}

}  // namespace detail

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

  // Each sequence's most tokens (prompt + new), for a cache that sizes itself to the work (a
  // paged pool of its own: memory follows the tokens stored) unless the caller said otherwise.
  GenerationConfig sized = cfg;
  if (sized.cache.seq_tokens.empty()) {
    for (int64_t n : lens) sized.cache.seq_tokens.push_back(n + cfg.max_new_tokens - 1);
  }
  std::unique_ptr<KVCache> cache = make_cache_for(sized, batch);
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
    GenerationResult r = detail::generate_cuda(*model_, *cache, prompts, cfg, on_token);
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
  const detail::Prefill pf = detail::prefill(*model_, cache.get(), prompts);
  res.prefill_tokens = pf.computed;
  res.reused_tokens = pf.reused;
  at::Tensor logits = pf.logits;
  at::Tensor next = sample_next(logits, cfg.sampling, gen).contiguous();  // CPU int64 [B]
  res.timing.prefill_ms = ms_since(t0);
  emit(next);
  std::vector<int64_t> past = lens;  // positions each sequence holds before the fed-back token
  // Sequences that stopped and whose cache storage went back (KVCache::release): their rows sit
  // the later steps out.
  std::vector<bool> idle(static_cast<size_t>(batch), false);
  bool any_idle = false;
  auto release_done = [&] {
    for (int64_t b = 0; cache && b < batch; ++b) {
      const size_t i = static_cast<size_t>(b);
      if (sink.done(i) && !idle[i] && cache->release(b)) idle[i] = any_idle = true;
    }
  };
  release_done();
  for (int step = 1; step < cfg.max_new_tokens && !sink.all_done(); ++step) {
    t0 = Clock::now();
    if (cache && any_idle) {
      std::vector<int64_t> p(past), n(ones);
      for (size_t b = 0; b < idle.size(); ++b) {
        if (idle[b]) p[b] = n[b] = 0;
      }
      logits = model_->forward_last(next.view({batch, 1}), p, n, cache.get());
    } else if (cache && ragged) {
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
    release_done();
  }
  if (cache) res.cache_stats = cache->stats();
  return res;
}

}  // namespace eli
