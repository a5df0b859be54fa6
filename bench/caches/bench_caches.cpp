// One decode step (append one token + attend) per layout and codec, at the GPT-2 124M layer
// shape (12 heads, head_dim 64; one layer), for a few batch sizes and context lengths.
// items_per_second = tokens/s (one per sequence and step). bytes_per_second = the bytes the step
// moves: the stored cache read by attend (payload + scales + metadata), the new token's
// encoded K and V written, the query read and the output written.
// Runs on CPU fp32; ELI_BENCH_DEVICE=cuda runs the same on fp16 CUDA tensors.
// prompt_attention: one layer's attention of a whole prompt (cache::attend_history, the path of
// every cache's prefill), its fp32 scores in blocks of query rows that fit score_mib per
// sequence (0: one block, every row at once).

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "eli/cache/attend.h"
#include "eli/kv_cache.h"

namespace {

const std::vector<std::string> kSpecs{
    "full_cache",           "paged_attention",  "sliding_window",       "chunked_cache",
    "quant_int8",           "quant_int4",       "quant_mixed",          "full+int8/per_tensor",
    "full+int4/group32/zp", "paged+int8",       "paged+int4",           "sliding_window+int4",
    "chunked_cache+int8",   "full+int4+rotate", "full+int8+residual=64"};

at::Device bench_device() {
  const char* d = std::getenv("ELI_BENCH_DEVICE");
  return d ? at::Device(d) : at::Device(at::kCPU);
}

void BM_DecodeStep(benchmark::State& state, const std::string& spec) {
  const int64_t batch = state.range(0), context = state.range(1);
  const eli::ModelShape shape{1, 12, 64, 1024};
  const at::Device dev = bench_device();
  const at::ScalarType dtype = dev.is_cuda() ? at::kHalf : at::kFloat;
  auto opts = at::TensorOptions().dtype(dtype).device(dev);
  auto cache = eli::make_cache(spec, shape, batch, {}, {}, dtype, dev);
  auto prefill = [&] {
    cache->reset();
    auto kv = at::randn({batch, 12, context, 64}, opts);
    cache->append(0, kv, kv);
    cache->attend(0, kv);
  };
  at::manual_seed(0);
  prefill();
  auto k = at::randn({batch, 12, 1, 64}, opts), q = at::randn({batch, 12, 1, 64}, opts);
  int64_t bytes = 0, grown = 0;
  for (auto _ : state) {
    if (++grown > 16) {  // keep the context near its nominal length
      state.PauseTiming();
      prefill();
      grown = 1;
      state.ResumeTiming();
    }
    cache->append(0, k, k);
    auto out = cache->attend(0, q);
    benchmark::DoNotOptimize(out.data_ptr());
    const eli::CacheStats s = cache->stats();
    const int64_t per_token = s.tokens_stored > 0 ? s.total_bytes() / s.tokens_stored : 0;
    bytes += s.total_bytes() + per_token + 2 * q.numel() * q.element_size();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.SetBytesProcessed(bytes);
  state.SetLabel(cache->name());
}

void BM_PromptAttention(benchmark::State& state) {
  const int64_t batch = state.range(0), prompt = state.range(1), mib = state.range(2);
  const at::Device dev = bench_device();
  const at::ScalarType dtype = dev.is_cuda() ? at::kHalf : at::kFloat;
  auto opts = at::TensorOptions().dtype(dtype).device(dev);
  at::manual_seed(0);
  const at::Tensor q = at::randn({batch, 12, prompt, 64}, opts),
                   k = at::randn({batch, 12, prompt, 64}, opts),
                   v = at::randn({batch, 12, prompt, 64}, opts);
  const int64_t budget = mib > 0 ? mib << 20 : INT64_MAX;  // (0 would be the device default)
  for (auto _ : state) {
    const at::Tensor out =
        eli::cache::attend_history(q, at::Tensor(), at::Tensor(), {}, {}, k, v, {}, budget);
    benchmark::DoNotOptimize(out.sum().item<float>());  // (waits for a device)
  }
  state.SetItemsProcessed(state.iterations() * batch * prompt);
}

const int kRegistered = [] {
  benchmark::RegisterBenchmark("prompt_attention", BM_PromptAttention)
      ->ArgsProduct({{1}, {1024, 2048}, {4, 16, 64, 1024, 0}})
      ->ArgNames({"batch", "prompt", "score_mib"})
      ->Unit(benchmark::kMillisecond);
  for (const auto& s : kSpecs) {
    benchmark::RegisterBenchmark(("decode_step/" + s).c_str(), BM_DecodeStep, s)
        ->ArgsProduct({{1, 4}, {128, 512, 1000}})
        ->ArgNames({"batch", "context"})
        ->Unit(benchmark::kMicrosecond);
  }
  return 0;
}();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const at::Device dev = bench_device();
  benchmark::AddCustomContext("eli_shape", "one layer, 12 heads, head_dim 64 (GPT-2 124M)");
  benchmark::AddCustomContext("eli_device", dev.str());
  benchmark::AddCustomContext("eli_dtype", dev.is_cuda() ? "float16" : "float32");
  benchmark::AddCustomContext("eli_refill_steps", "16");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
