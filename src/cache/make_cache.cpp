// make_cache: method name / spec -> a factory from the registry -> one Cache<Layout, KCodec,
// VCodec>. The registry starts with every built-in layout x K codec x V codec (4 x 3 x 3
// instances, made here); eli/cache/registry.h adds a user's layouts, codecs and names.

#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <tuple>

#include "cache/spec.h"
#include "eli/cache/registry.h"
#include "eli/error.h"
#include "eli/kv_cache.h"

namespace eli {
namespace cache {
namespace {

using CacheKey = std::tuple<std::string, std::string, std::string>;  // layout, K codec, V codec

struct Registry {
  std::mutex mu;
  std::vector<LayoutInfo> layouts;
  std::map<std::string, bool> codecs;                        // token -> quantized
  std::vector<std::pair<std::string, std::string>> methods;  // registered name -> spec
  std::map<CacheKey, CacheFactory> caches;
};

template <class L, class K>
void add_builtin_v(Registry& r, const std::string& layout, const std::string& k) {
  r.caches[{layout, k, "fp"}] = cache_factory<L, K, IdentityCodec>();
  r.caches[{layout, k, "int8"}] = cache_factory<L, K, Int8Codec>();
  r.caches[{layout, k, "int4"}] = cache_factory<L, K, Int4Codec>();
}

template <class L>
void add_builtin(Registry& r, LayoutInfo info) {
  add_builtin_v<L, IdentityCodec>(r, info.name, "fp");
  add_builtin_v<L, Int8Codec>(r, info.name, "int8");
  add_builtin_v<L, Int4Codec>(r, info.name, "int4");
  r.layouts.push_back(std::move(info));
}

Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    reg->codecs = {{"fp", false}, {"int8", true}, {"int4", true}};
    add_builtin<ContiguousLayout>(*reg, {"full", {"full_cache", "contiguous"}, {}});
    add_builtin<SlidingWindowLayout>(
        *reg, {"sliding", {"sliding_window", "window"}, {"window", "sinks"}});
    add_builtin<PagedLayout>(*reg, {"paged", {"paged_attention"}, {"block", "pool"}});
    add_builtin<ChunkedLayout>(*reg,
                               {"chunked", {"chunked_cache", "chunk"}, {"chunk", "keep", "bias"}});
    return reg;
  }();
  return *r;
}

bool layout_named(const LayoutInfo& l, const std::string& name) {
  return l.name == name || std::find(l.aliases.begin(), l.aliases.end(), name) != l.aliases.end();
}

// Words the spec syntax or the method list already uses.
bool reserved(const std::string& name) {
  static const std::vector<std::string> words{"fp",   "fp16", "fp32",  "none",   "int8",
                                              "int4", "cfg",  "mixed", "rotate", "hadamard"};
  const auto& m = method_names();
  return std::find(words.begin(), words.end(), name) != words.end() ||
         std::find(m.begin(), m.end(), name) != m.end() || name.rfind("residual", 0) == 0;
}

void check_name(const std::string& name, const char* what) {
  bool ok = !name.empty();
  for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  ELI_CHECK(ok, "register {}: '{}' must be non-empty letters, digits and '_'", what, name);
  ELI_CHECK(!reserved(name), "register {}: '{}' is a name eli uses", what, name);
}

// Caller holds r.mu.
bool name_taken(const Registry& r, const std::string& name) {
  for (const auto& l : r.layouts) {
    if (layout_named(l, name)) return true;
  }
  for (const auto& m : r.methods) {
    if (m.first == name) return true;
  }
  return r.codecs.count(name) > 0;
}

}  // namespace

void add_layout(const LayoutInfo& info) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names{info.name};
  names.insert(names.end(), info.aliases.begin(), info.aliases.end());
  for (const auto& n : names) {
    check_name(n, "layout");
    ELI_CHECK(!name_taken(r, n), "register layout: '{}' is already registered", n);
  }
  for (const auto& p : info.params) {
    ELI_CHECK(p != "max", "register layout {}: parameter 'max' is common to every layout",
              info.name);
  }
  r.layouts.push_back(info);
}

void add_codec(const std::string& token, bool quantized) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  check_name(token, "codec");
  ELI_CHECK(!name_taken(r, token), "register codec: '{}' is already registered", token);
  r.codecs[token] = quantized;
}

void add_cache(const std::string& layout, const std::string& k_codec, const std::string& v_codec,
               CacheFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const bool has_layout = std::any_of(r.layouts.begin(), r.layouts.end(),
                                      [&](const LayoutInfo& l) { return l.name == layout; });
  ELI_CHECK(has_layout, "register cache: no layout '{}' (register_layout it first)", layout);
  for (const auto& c : {k_codec, v_codec}) {
    ELI_CHECK(r.codecs.count(c), "register cache: no codec '{}' (register_codec it first)", c);
  }
  ELI_CHECK(factory != nullptr, "register cache: empty factory for {}+k:{},v:{}", layout, k_codec,
            v_codec);
  const bool fresh =
      r.caches.emplace(CacheKey{layout, k_codec, v_codec}, std::move(factory)).second;
  ELI_CHECK(fresh, "register cache: {}+k:{},v:{} is already registered", layout, k_codec, v_codec);
}

void register_method(const std::string& name, const std::string& spec) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  check_name(name, "method");
  ELI_CHECK(!name_taken(r, name), "register method: '{}' is already registered", name);
  ELI_CHECK(!spec.empty(), "register method {}: empty spec", name);
  r.methods.emplace_back(name, spec);
}

std::vector<std::string> registered_methods() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> out;
  for (const auto& m : r.methods) out.push_back(m.first);
  return out;
}

std::optional<LayoutInfo> find_layout(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const auto& l : r.layouts) {
    if (layout_named(l, name)) return l;
  }
  return std::nullopt;
}

std::optional<bool> find_codec(const std::string& token) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.codecs.find(token);
  if (it == r.codecs.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> find_method(const std::string& name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const auto& m : r.methods) {
    if (m.first == name) return m.second;
  }
  return std::nullopt;
}

std::string layout_list() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::string out;
  for (const auto& l : r.layouts) {
    out += (out.empty() ? "" : ", ") + l.name;
    std::string aliases;
    for (const auto& a : l.aliases) aliases += (aliases.empty() ? "" : ", ") + a;
    if (!aliases.empty()) out += " (" + aliases + ")";
  }
  return out;
}

std::string custom_codec_list() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::string out;
  for (const auto& c : r.codecs) {
    if (c.first == "fp" || c.first == "int8" || c.first == "int4") continue;
    out += (out.empty() ? "" : ", ") + c.first;
  }
  return out;
}

bool is_builtin_layout(const std::string& layout) {
  return layout == "full" || layout == "sliding" || layout == "paged" || layout == "chunked";
}

namespace {

CodecArgs codec_args(const ModelShape& shape, const CodecChoice& c, const QuantizationConfig& q,
                     at::ScalarType dtype, at::Device device) {
  CodecArgs a;
  a.n_layer = shape.n_layer;
  a.head_dim = shape.head_dim;
  a.dtype = dtype;
  a.device = device;
  a.spec.bits = c.mode == QuantMode::kInt4 ? 4 : 8;
  a.spec.granularity = c.granularity;
  a.spec.group_size = c.group_size;
  a.spec.zero_point = c.zero_point;
  a.spec.eps = q.eps;
  return a;
}

CacheFactory find_cache(const CacheKey& key) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.caches.find(key);
  return it == r.caches.end() ? CacheFactory() : it->second;
}

}  // namespace
}  // namespace cache

std::unique_ptr<KVCache> make_cache(const std::string& method, const ModelShape& shape,
                                    int64_t batch, const CacheConfig& cache_cfg,
                                    const QuantizationConfig& quant_cfg, at::ScalarType dtype,
                                    at::Device device) {
  cache_cfg.validate();
  quant_cfg.validate();
  const cache::CacheSpec spec = cache::parse_cache_spec(method, cache_cfg, quant_cfg);
  ELI_CHECK(
      shape.n_layer >= 1 && shape.n_head >= 1 && shape.head_dim >= 1 && shape.n_positions >= 1,
      "make_cache: bad model shape (layers {}, heads {}, head_dim {}, positions {})", shape.n_layer,
      shape.n_head, shape.head_dim, shape.n_positions);
  ELI_CHECK(batch >= 1, "make_cache: batch = {} must be >= 1", batch);
  // Positions end at n_positions (GPT-2's positions are learned): capacity past them could never
  // be used, only allocated (found by fuzz_spec: paged(max=102471024) asked for 52 GB).
  ELI_CHECK(spec.cfg.max_tokens <= shape.n_positions,
            "make_cache '{}': max_tokens = {} is above the model's n_positions {} (no sequence "
            "holds more positions; 0 = n_positions)",
            method, spec.cfg.max_tokens, shape.n_positions);
  ELI_CHECK(
      dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble,
      "make_cache: dtype {} is not a floating type", c10::toString(dtype));

  const std::string k = spec.k.token(), v = spec.v.token();
  const cache::CacheFactory factory = cache::find_cache({spec.layout, k, v});
  ELI_CHECK(factory != nullptr,
            "make_cache '{}': no cache for layout {} with K codec {} and V codec {} (a "
            "registered codec pairs with itself over the built-in layouts, a registered layout "
            "with the built-in codecs; eli::cache::register_cache adds other combinations)",
            method, spec.layout, k, v);
  cache::CacheArgs a;
  a.shape = shape;
  a.batch = batch;
  a.capacity = spec.cfg.max_tokens > 0 ? spec.cfg.max_tokens : shape.n_positions;
  a.cfg = spec.cfg;
  a.k_codec = cache::codec_args(shape, spec.k, quant_cfg, dtype, device);
  a.v_codec = cache::codec_args(shape, spec.v, quant_cfg, dtype, device);
  a.residual_tokens = spec.residual_tokens;
  // Rotation only helps a quantized side; an fp side is stored as is.
  a.rotate_k = spec.rotate && cache::find_codec(k).value_or(false);
  a.rotate_v = spec.rotate && cache::find_codec(v).value_or(false);
  a.dtype = dtype;
  a.device = device;
  a.layout_params = spec.params;
  // Storage is allocated here, up front: running out of memory is an eli::Error that says what
  // was asked for, and nothing of the cache stays allocated (the next call works).
  auto out_of_memory = [&](const std::string& why) {
    ELI_FAIL(
        "make_cache '{}': out of memory on {} allocating the cache for batch {} x {} tokens, "
        "{} layers, {} heads of {} ({}); use a smaller batch or max_tokens",
        method, device.str(), batch, a.capacity, shape.n_layer, shape.n_head, shape.head_dim,
        why.substr(0, why.find('\n')));
  };
  try {
    return factory(a);
  } catch (const c10::OutOfMemoryError& e) {
    out_of_memory(e.what_without_backtrace());
  } catch (const std::bad_alloc& e) {
    out_of_memory(e.what());
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    if (what.find("can't allocate memory") == std::string::npos &&
        what.find("out of memory") == std::string::npos)
      throw;
    out_of_memory(what);
  }
  return nullptr;  // not reached: out_of_memory throws
}

MethodKind method_kind(const std::string& method) {
  if (method == "no_cache") return MethodKind::kRecompute;
  try {
    const cache::CacheSpec s = cache::parse_cache_spec(method, {}, {});
    const bool exact = s.layout == "full" && s.k.token() == "fp" && s.v.token() == "fp";
    return exact ? MethodKind::kFullCache : MethodKind::kCache;
  } catch (const Error&) {
    return MethodKind::kCache;  // make_cache reports what is wrong with the name
  }
}

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names{"no_cache",        "full_cache",   "sliding_window",
                                              "quant_int8",      "quant_int4",   "quant_mixed",
                                              "paged_attention", "chunked_cache"};
  return names;
}

}  // namespace eli

namespace eli {

void KVCache::append_ragged(int layer, const at::Tensor& k, const at::Tensor& v,
                            const std::vector<int64_t>& new_tokens,
                            const std::vector<int64_t>& seqs) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    ELI_CHECK(seqs[i] == static_cast<int64_t>(i),
              "{}: this cache takes appends of every sequence in order only", name());
  }
  for (size_t b = 0; b < new_tokens.size(); ++b) {
    ELI_CHECK(k.dim() == 4 && new_tokens[b] == k.size(2),
              "{}: this cache holds only batches of equal lengths (sequence {} brings {} of {} "
              "positions)",
              name(), b, new_tokens[b], k.dim() == 4 ? k.size(2) : 0);
  }
  append(layer, k, v);
}

}  // namespace eli
