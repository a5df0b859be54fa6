// make_cache: method name / spec -> one Cache<Layout, KCodec, VCodec> instance. Every layout x
// K-codec x V-codec combination is instantiated here (4 x 3 x 3).

#include <memory>

#include "cache/cache.h"
#include "cache/spec.h"
#include "eli/error.h"
#include "eli/kv_cache.h"

namespace eli {
namespace {

using cache::CacheArgs;

template <class L, class K, class V>
std::unique_ptr<KVCache> build(const CacheArgs& a) {
  return std::make_unique<cache::Cache<L, K, V>>(a);
}

template <class L, class K>
std::unique_ptr<KVCache> with_v(QuantMode v, const CacheArgs& a) {
  switch (v) {
    case QuantMode::kNone:
      return build<L, K, cache::IdentityCodec>(a);
    case QuantMode::kInt8:
      return build<L, K, cache::Int8Codec>(a);
    case QuantMode::kInt4:
      return build<L, K, cache::Int4Codec>(a);
  }
  ELI_FAIL("unknown V quantization mode");
}

template <class L>
std::unique_ptr<KVCache> with_k(QuantMode k, QuantMode v, const CacheArgs& a) {
  switch (k) {
    case QuantMode::kNone:
      return with_v<L, cache::IdentityCodec>(v, a);
    case QuantMode::kInt8:
      return with_v<L, cache::Int8Codec>(v, a);
    case QuantMode::kInt4:
      return with_v<L, cache::Int4Codec>(v, a);
  }
  ELI_FAIL("unknown K quantization mode");
}

cache::CodecArgs codec_args(const ModelShape& shape, const cache::CodecChoice& c,
                            const QuantizationConfig& q, at::ScalarType dtype, at::Device device) {
  cache::CodecArgs a;
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

}  // namespace

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
  ELI_CHECK(
      dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble,
      "make_cache: dtype {} is not a floating type", c10::toString(dtype));

  CacheArgs a;
  a.shape = shape;
  a.batch = batch;
  a.capacity = spec.cfg.max_tokens > 0 ? spec.cfg.max_tokens : shape.n_positions;
  a.cfg = spec.cfg;
  a.k_codec = codec_args(shape, spec.k, quant_cfg, dtype, device);
  a.v_codec = codec_args(shape, spec.v, quant_cfg, dtype, device);
  a.residual_tokens = spec.residual_tokens;
  // Rotation only helps a quantized side; an fp side is stored as is.
  a.rotate_k = spec.rotate && spec.k.mode != QuantMode::kNone;
  a.rotate_v = spec.rotate && spec.v.mode != QuantMode::kNone;
  a.dtype = dtype;
  a.device = device;

  if (spec.layout == "full") return with_k<cache::ContiguousLayout>(spec.k.mode, spec.v.mode, a);
  if (spec.layout == "sliding") {
    return with_k<cache::SlidingWindowLayout>(spec.k.mode, spec.v.mode, a);
  }
  if (spec.layout == "paged") return with_k<cache::PagedLayout>(spec.k.mode, spec.v.mode, a);
  if (spec.layout == "chunked") {
    return with_k<cache::ChunkSummaryLayout>(spec.k.mode, spec.v.mode, a);
  }
  ELI_FAIL("make_cache: no layout '{}'", spec.layout);
}

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names{"no_cache",        "full_cache",   "sliding_window",
                                              "quant_int8",      "quant_int4",   "quant_mixed",
                                              "paged_attention", "chunked_cache"};
  return names;
}

}  // namespace eli
