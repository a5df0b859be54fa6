// The CUDA decode loop: one decode step (model + cache + sampler) captured as a CUDA graph and
// replayed, so a step costs one graph launch and two small uploads of host work instead of a
// few hundred kernel launches. Nothing is read back per step except the tokens, copied into
// pinned memory and looked at a few steps later (at once when stop tokens need checking).

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "decode_loop.h"
#include "eli/error.h"

namespace eli::detail {

namespace {
using Clock = std::chrono::steady_clock;

// Steps the host runs ahead of the tokens it has looked at when nothing stops generation early:
// enough to keep the GPU fed while a callback runs.
constexpr int kLag = 8;

// Free device memory below which the cached blocks go back to the device before a capture.
constexpr size_t kCaptureHeadroom = size_t{1} << 30;

// Capture allocates from the caching allocator's private pool of the graph; with the allocator
// turned off (PYTORCH_NO_CUDA_MEMORY_CACHING, set for debugging and for compute-sanitizer) an
// allocation or free during capture is a CUDA error, thrown from a tensor's destructor. The
// steps then run eagerly (same kernels, same device state; no replay).
bool capture_possible() { return std::getenv("PYTORCH_NO_CUDA_MEMORY_CACHING") == nullptr; }

// Ends a capture that failed part-way and gives its pool back, so that the stream and the
// allocator are as before; the caller rethrows.
template <typename PoolId>
void abandon_capture(const PoolId& pool, cudaStream_t stream, c10::DeviceIndex dev) {
  cudaGraph_t partial = nullptr;
  if (cudaStreamEndCapture(stream, &partial) == cudaSuccess && partial != nullptr) {
    (void)cudaGraphDestroy(partial);
  }
  (void)cudaGetLastError();
  c10::cuda::CUDACachingAllocator::endAllocateToPool(dev, pool);
  c10::cuda::CUDACachingAllocator::releasePool(dev, pool);
}

}  // namespace

GenerationResult generate_cuda(const model::GPT2& model, KVCache& cache,
                               const std::vector<std::vector<int64_t>>& prompts,
                               const GenerationConfig& cfg, const TokenCallback& on_token) {
  c10::InferenceMode inference;
  const at::Device dev = model.device();
  const c10::cuda::CUDAGuard device_guard(dev);
  // Capture needs a stream other than the legacy default one; the step's uploads, replays and
  // token copies are ordered on it. It starts after whatever the caller's stream has queued.
  const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(dev.index());
  const c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, dev.index());
  {
    at::cuda::CUDAEvent ready;
    ready.record(caller);
    ready.block(stream);
  }
  const c10::cuda::CUDAStreamGuard stream_guard(stream);

  const int64_t batch = static_cast<int64_t>(prompts.size());
  std::vector<int64_t> lens;
  for (const auto& p : prompts) lens.push_back(static_cast<int64_t>(p.size()));
  const int max_new = cfg.max_new_tokens;
  GenerationResult res;
  res.tokens.assign(static_cast<size_t>(batch), {});

  const auto on_dev = at::TensorOptions().device(dev).dtype(at::kLong);
  // Per-step device state: [0, B) each sequence's new token's position, [B] the step (the
  // sampler's noise).
  at::Tensor state = at::zeros({batch + 1}, on_dev);
  const at::Tensor pos = state.narrow(0, 0, batch), step = state.narrow(0, batch, 1);
  auto set_state = [&](const std::vector<int64_t>& p, int64_t s) {
    at::Tensor staged =
        at::empty({batch + 1}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
    std::copy(p.begin(), p.end(), staged.data_ptr<int64_t>());
    staged.data_ptr<int64_t>()[batch] = s;
    state.copy_(staged, /*non_blocking=*/true);
  };
  at::Tensor ids = at::empty({batch, 1}, on_dev);  // the step's input: the last sampled tokens
  at::Tensor host_tokens =
      at::empty({max_new, batch}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  std::vector<at::cuda::CUDAEvent> ready;  // ready[s]: step s's tokens are in host_tokens
  ready.reserve(static_cast<size_t>(max_new));
  for (int s = 0; s < max_new; ++s) ready.emplace_back(cudaEventDefault);

  TokenSink sink(res.tokens, cfg.stop_tokens, on_token);
  auto emit = [&](int s) { sink.push(host_tokens.data_ptr<int64_t>() + int64_t(s) * batch); };
  auto sample_into_ids = [&](const at::Tensor& logits) {
    ids.copy_(sample_next_device(logits, cfg.sampling, step).view({batch, 1}));
  };
  auto copy_out = [&](int s) {
    host_tokens.select(0, s).copy_(ids.view({batch}), /*non_blocking=*/true);
    ready[static_cast<size_t>(s)].record(stream);
  };

  at::cuda::CUDAGraph graph;
  // The cache (the caller's) and everything above hold memory the work queued on this stream
  // uses: however this function is left (a callback may throw), that work ends before any of
  // it is freed, so this is declared last (destroyed first).
  struct SyncOnExit {
    c10::cuda::CUDAStream s;
    ~SyncOnExit() { (void)cudaStreamSynchronize(s.stream()); }  // must not throw here
  } sync_on_exit{stream};

  const auto t0 = Clock::now();
  set_state(std::vector<int64_t>(static_cast<size_t>(batch), 0), 0);
  const Prefill pf = prefill(model, &cache, prompts);
  res.prefill_tokens = pf.computed;
  res.reused_tokens = pf.reused;
  sample_into_ids(pf.logits);
  copy_out(0);
  ready[0].synchronize();
  res.timing.prefill_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  emit(0);

  auto step_body = [&] { sample_into_ids(model.decode_logits(ids, pos, &cache)); };
  // Sequences that stopped and whose cache storage went back (KVCache::release): graph steps
  // give them position -1, eager ones no new token.
  std::vector<bool> idle(static_cast<size_t>(batch), false);
  bool any_idle = false;
  auto release_done = [&] {
    for (int64_t b = 0; b < batch; ++b) {
      const size_t i = static_cast<size_t>(b);
      if (sink.done(i) && !idle[i] && cache.release(b)) idle[i] = any_idle = true;
    }
  };
  release_done();
  const bool may_capture = capture_possible();
  bool warmed = false, captured = false;
  const int lag = cfg.stop_tokens.empty() ? kLag : 0;
  int seen = 1;  // steps whose tokens were emitted
  int ran = 1;   // steps launched (the prefill's token is step 0)
  for (int s = 1; s < max_new && !sink.all_done(); ++s) {
    std::vector<int64_t> p(lens);  // the fed-back tokens' positions (-1: idle)
    std::vector<int64_t> model_pos(lens), n(static_cast<size_t>(batch), 1);
    for (size_t b = 0; b < p.size(); ++b) {
      p[b] = idle[b] ? -1 : p[b] + s - 1;
      model_pos[b] = std::max<int64_t>(p[b], 0);
      if (idle[b]) n[b] = 0;
    }
    set_state(model_pos, s);
    if (cache.begin_graph_step(p)) {
      if (captured) {
        graph.replay();
        graph_replays().fetch_add(1, std::memory_order_relaxed);
      } else if (!warmed || !may_capture) {
        // The first graph-mode step runs as it is: cuBLAS and the allocator warm up on this
        // stream outside the capture.
        step_body();
        warmed = true;
      } else {
        // The graph's memory pool, named here: CUDAGraph::pool() is only valid after a capture
        // succeeded, and a failed one must give it back.
        const auto pool = at::cuda::graph_pool_handle();
        // During a capture the allocator may not give cached blocks back to the device, so a
        // card whose memory sits in the cache of earlier, larger work (a long prefill) runs out
        // inside the capture: free what is cached first when the card is nearly full.
        size_t free_bytes = 0, total_bytes = 0;
        if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess &&
            free_bytes < kCaptureHeadroom) {
          c10::cuda::CUDACachingAllocator::emptyCache();
        }
        graph.capture_begin(pool);
        try {
          step_body();
        } catch (const std::exception& e) {
          abandon_capture(pool, stream.stream(), dev.index());
          ELI_FAIL(
              "capturing the decode step as a CUDA graph failed ({}); "
              "GenerationConfig::cuda_graph = false runs the eager step",
              e.what());
        }
        graph.capture_end();
        graph.replay();
        graph_replays().fetch_add(1, std::memory_order_relaxed);
        captured = true;
      }
      cache.end_graph_step(p);
    } else if (any_idle) {  // eager, the idle rows bringing nothing
      sample_into_ids(model.forward_last(ids, model_pos, n, &cache));
    } else {
      step_body();  // eager (a layout restructuring, a per-tensor codec, ...)
    }
    copy_out(s);
    ran = s + 1;
    for (; seen <= s - lag && !sink.all_done(); ++seen) {
      ready[static_cast<size_t>(seen)].synchronize();
      emit(seen);
    }
    release_done();
  }
  for (; seen < ran && !sink.all_done(); ++seen) {
    ready[static_cast<size_t>(seen)].synchronize();
    emit(seen);
  }
  stream.synchronize();  // (SyncOnExit's wait is then free)
  // Step s's time is the GPU timeline between the tokens of s - 1 and of s: in steady state
  // the interval between replays (the host runs ahead), including any host gap it could not
  // hide (the first steps: warm-up and capture; every step when stop tokens are checked).
  for (int s = 1; s < seen; ++s) {
    res.timing.decode_ms.push_back(static_cast<double>(
        ready[static_cast<size_t>(s - 1)].elapsed_time(ready[static_cast<size_t>(s)])));
  }
  res.cache_stats = cache.stats();
  return res;
}

}  // namespace eli::detail
