#pragma once
// The CUDA decode loop behind Generator::generate (decode_loop_cuda.cpp, built with CUDA
// LibTorch only): the single-token step captured once as a CUDA graph and replayed, sampling on
// the device, tokens copied out asynchronously.

#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>

#include "eli/generator.h"

namespace eli::detail {

/// Test hook: graph replays of the CUDA decode loop so far (defined in every build).
std::atomic<int64_t>& graph_replays();

/// Prefill + decode of prompts [B, plen] (int64, CPU) through `cache` on a CUDA model.
/// Arguments already validated by Generator::generate. Steps the cache cannot run from a graph
/// (KVCache::begin_graph_step false) run eagerly, with the same device sampler.
GenerationResult generate_cuda(const model::GPT2& model, KVCache& cache, const at::Tensor& prompts,
                               const GenerationConfig& cfg, const TokenCallback& on_token);

}  // namespace eli::detail
