// What the GPU tests share: whether they can run, the tiny fp16 model of the decode-loop tests,
// and the small-window generation settings under which eviction, block allocation and chunk
// pooling all happen within ~150 positions.
#pragma once

#include <string>

#include "eli/generator.h"
#include "eli/model.h"
#include "eli/ops.h"

namespace eli::gpu_test {

inline bool gpu_available() { return at::hasCUDA() && ops::has_cuda_ops(); }

/// 2 layers, 128 wide, 2 heads, vocabulary 1000, 512 positions; random weights (seed 7), fp16.
inline const model::GPT2& tiny_gpt2() {
  static const model::GPT2 m = model::GPT2::random(GPT2Config::named("L2-E128-H2-V1000-P512"), 7,
                                                   at::Device(at::kCUDA, 0), at::kHalf);
  return m;
}

/// `method` with windows of 32 (+ 4 sinks), blocks and chunks of 16, 24 exact tokens kept.
inline GenerationConfig small_cache_config(const std::string& method, int max_new_tokens,
                                           bool cuda_graph) {
  GenerationConfig c;
  c.method = method;
  c.max_new_tokens = max_new_tokens;
  c.cuda_graph = cuda_graph;
  c.cache.window_size = 32;
  c.cache.sink_tokens = 4;
  c.cache.block_size = 16;
  c.cache.chunk_size = 16;
  c.cache.keep_last = 24;
  return c;
}

}  // namespace eli::gpu_test
