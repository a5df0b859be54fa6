#pragma once
// The method-spec string (docs/CACHES.md): "layout[(key=value,...)][+codec][+option]...".

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "eli/cache/registry.h"
#include "eli/config.h"

namespace eli::cache {

struct CodecChoice {
  QuantMode mode = QuantMode::kNone;
  Granularity granularity = Granularity::kPerTokenHead;
  int group_size = 32;
  bool zero_point = false;
  std::string custom;  // a registered codec's token (mode etc. then unused)
  /// The registry's name for this codec: the custom token, or fp / int8 / int4.
  std::string token() const;
};

struct CacheSpec {
  std::string layout;  // "full" | "sliding" | "paged" | "chunked" | a registered layout
  CacheConfig cfg;     // the caller's CacheConfig with the spec's (key=value) overrides
  std::map<std::string, int64_t> params;  // a registered layout's key=value parameters
  CodecChoice k, v;
  int residual_tokens = 0;
  bool rotate = false;
};

/// Parses a method name or spec; bad or unknown parts -> eli::Error listing the valid ones.
/// "no_cache" -> eli::Error (it is not a cache).
CacheSpec parse_cache_spec(const std::string& method, const CacheConfig& cfg,
                           const QuantizationConfig& quant);

// The registry as the parser sees it (src/cache/make_cache.cpp).
/// The layout called `name` (its name or an alias).
std::optional<LayoutInfo> find_layout(const std::string& name);
/// Whether token names a codec, and then whether it quantizes.
std::optional<bool> find_codec(const std::string& token);
/// The spec of a method registered with register_method.
std::optional<std::string> find_method(const std::string& name);
/// For error messages: every layout with its aliases; the registered codec tokens.
std::string layout_list();
std::string custom_codec_list();
/// Whether `layout` is one of the four built-in layouts (parameters in CacheConfig).
bool is_builtin_layout(const std::string& layout);

}  // namespace eli::cache
