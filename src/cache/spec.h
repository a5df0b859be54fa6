#pragma once
// The method-spec string (docs/CACHES.md): "layout[(key=value,...)][+codec][+option]...".

#include <string>

#include "eli/config.h"

namespace eli::cache {

struct CodecChoice {
  QuantMode mode = QuantMode::kNone;
  Granularity granularity = Granularity::kPerTokenHead;
  int group_size = 32;
  bool zero_point = false;
};

struct CacheSpec {
  std::string layout;  // "full" | "sliding" | "paged" | "chunked"
  CacheConfig cfg;     // the caller's CacheConfig with the spec's (key=value) overrides
  CodecChoice k, v;
  int residual_tokens = 0;
  bool rotate = false;
};

/// Parses a method name or spec; bad or unknown parts -> eli::Error listing the valid ones.
/// "no_cache" -> eli::Error (it is not a cache).
CacheSpec parse_cache_spec(const std::string& method, const CacheConfig& cfg,
                           const QuantizationConfig& quant);

}  // namespace eli::cache
