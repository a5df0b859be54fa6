#pragma once
/// Names of one's own for make_cache (eli/kv_cache.h), so that a layout or codec written
/// outside eli works wherever a method name does: eli::make_cache, GenerationConfig::method
/// (the Generator), the Benchmarker and the example tools' --methods.
///
///   // a codec (eli/cache/codec.h): the spec token "fp8" with every built-in layout
///   eli::cache::register_codec<Fp8Codec>("fp8");           // "full+fp8", "paged(block=16)+fp8"
///   // a layout (eli/cache/layout.h): a spec layout with its key=value parameters, combined
///   // with the built-in codecs
///   eli::cache::register_layout<HeavyHitterLayout>({"heavy", {"h2o"}, {"keep"}});
///                                                          // "heavy(keep=64)+int8"
///   // a method name for a spec
///   eli::cache::register_method("quant_fp8", "full+fp8");
///
/// Each template instantiates Cache<Layout, KCodec, VCodec> for the combinations it makes
/// available: register_codec<C> gives Cache<L, C, C> for the four built-in layouts (one codec on
/// both sides); register_layout<L> gives L with every pair of built-in codecs; register_cache
/// adds one combination of one's own (a registered layout with a registered codec, or a
/// registered codec for one side only). Registering a name twice, or a name eli uses, throws
/// eli::Error. Registration is thread-safe; call it before the name is used (for example from
/// main, or from a static initializer of the file that defines the type).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eli/cache/cache.h"
#include "eli/cache/chunked.h"
#include "eli/cache/codecs.h"
#include "eli/cache/contiguous.h"
#include "eli/cache/paged.h"
#include "eli/cache/sliding_window.h"
#include "eli/kv_cache.h"

namespace eli::cache {

/// Builds the cache of one (layout, K codec, V codec) combination.
using CacheFactory = std::function<std::unique_ptr<KVCache>(const CacheArgs&)>;

/// A layout's spec name, the other names it answers to, and the key=value parameters its spec
/// accepts (integers, passed in LayoutArgs::params; `max` is common to all layouts).
struct LayoutInfo {
  std::string name;
  std::vector<std::string> aliases;
  std::vector<std::string> params;
};

/// The untyped registry behind the templates below.
void add_layout(const LayoutInfo& info);
/// `quantized`: the codec's kQuantized (rotate and residual=N apply to quantized sides).
void add_codec(const std::string& token, bool quantized);
/// layout and codec names as registered (built-in: full, sliding, paged, chunked; fp, int8,
/// int4).
void add_cache(const std::string& layout, const std::string& k_codec, const std::string& v_codec,
               CacheFactory factory);
/// A method name for a spec string; the spec is checked when the name is used.
void register_method(const std::string& name, const std::string& spec);
/// The method names registered with register_method, in registration order.
std::vector<std::string> registered_methods();

template <class L, class K, class V>
CacheFactory cache_factory() {
  return [](const CacheArgs& a) -> std::unique_ptr<KVCache> {
    return std::make_unique<Cache<L, K, V>>(a);
  };
}

/// Cache<L, K, V> for spec "layout+k:k_codec,v:v_codec" (or "layout+codec" when equal).
template <class L, class K, class V>
bool register_cache(const std::string& layout, const std::string& k_codec,
                    const std::string& v_codec) {
  add_cache(layout, k_codec, v_codec, cache_factory<L, K, V>());
  return true;
}

/// Layout L under info.name, with every pair of built-in codecs.
template <class L>
bool register_layout(const LayoutInfo& info) {
  static_assert(check_layout<L>());
  add_layout(info);
  const std::string& n = info.name;
  register_cache<L, IdentityCodec, IdentityCodec>(n, "fp", "fp");
  register_cache<L, IdentityCodec, Int8Codec>(n, "fp", "int8");
  register_cache<L, IdentityCodec, Int4Codec>(n, "fp", "int4");
  register_cache<L, Int8Codec, IdentityCodec>(n, "int8", "fp");
  register_cache<L, Int8Codec, Int8Codec>(n, "int8", "int8");
  register_cache<L, Int8Codec, Int4Codec>(n, "int8", "int4");
  register_cache<L, Int4Codec, IdentityCodec>(n, "int4", "fp");
  register_cache<L, Int4Codec, Int8Codec>(n, "int4", "int8");
  register_cache<L, Int4Codec, Int4Codec>(n, "int4", "int4");
  return true;
}

/// Codec C under the spec token `token` (for K and V together) with every built-in layout.
template <class C>
bool register_codec(const std::string& token) {
  static_assert(check_codec<C>());
  add_codec(token, C::kQuantized);
  register_cache<ContiguousLayout, C, C>("full", token, token);
  register_cache<SlidingWindowLayout, C, C>("sliding", token, token);
  register_cache<PagedLayout, C, C>("paged", token, token);
  register_cache<ChunkedLayout, C, C>("chunked", token, token);
  return true;
}

}  // namespace eli::cache
