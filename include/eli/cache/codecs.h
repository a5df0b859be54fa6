#pragma once
/// The built-in codecs (requirements of a codec: eli/cache/codec.h): IdentityCodec stores the
/// model dtype as is; QuantCodec<8> / QuantCodec<4> store INT8 / packed INT4 codes with fp16
/// scales (and minima with a zero-point) in the layout of eli/quant_layout.h.

#include <ATen/ATen.h>

#include <algorithm>
#include <string>
#include <vector>

#include "eli/cache/codec.h"
#include "eli/cache/quantize.h"
#include "eli/config.h"
#include "eli/error.h"
#include "eli/ops.h"

namespace eli::cache {

/// Keeps values in the model dtype.
class IdentityCodec {
 public:
  static constexpr bool kQuantized = false;
  explicit IdentityCodec(const CodecArgs& a) : head_dim_(a.head_dim), dtype_(a.dtype) {}
  std::vector<PartSpec> parts() const { return {{head_dim_, dtype_, false}}; }
  std::string name() const { return "fp"; }
  Parts encode(int, const at::Tensor& x) const { return {x.to(dtype_)}; }
  at::Tensor decode(int, const Parts& p) const { return p[0].to(at::kFloat); }
  /// Stored parts (buffers [N, H, S, D]) as the ops' storage view, read in place.
  ops::KvStore store(int, const Parts& p) const { return ops::KvStore::fp(p[0]); }
  void reset() {}

 private:
  int64_t head_dim_;
  at::ScalarType dtype_;
};

/// INT8 (kBits = 8) or packed INT4 (kBits = 4) codes with fp16 scales (+ fp16 minima with a
/// zero-point), granularity chosen at run time; per_tensor keeps one fp32 scale per layer.
template <int kBits>
class QuantCodec {
 public:
  static constexpr bool kQuantized = true;
  explicit QuantCodec(const CodecArgs& a)
      : head_dim_(a.head_dim), spec_(a.spec), scale_(static_cast<size_t>(a.n_layer), 0.0f) {
    spec_.bits = kBits;
    spec_.check(head_dim_);
  }
  std::vector<PartSpec> parts() const {
    const at::ScalarType code_t = (kBits == 8 && !spec_.zero_point) ? at::kChar : at::kByte;
    std::vector<PartSpec> p{{spec_.code_bytes(head_dim_), code_t, false}};
    const int64_t g = spec_.groups(head_dim_);
    if (g > 0) p.push_back({g, at::kHalf, true});
    if (spec_.zero_point) p.push_back({g, at::kHalf, true});
    return p;
  }
  std::string name() const {
    std::string n = kBits == 8 ? "int8/" : "int4/";
    switch (spec_.granularity) {
      case Granularity::kPerTensor:
        n += "per_tensor";
        break;
      case Granularity::kPerTokenHead:
        n += "per_token_head";
        break;
      case Granularity::kGroup:
        n += "group" + std::to_string(spec_.group_size);
        break;
    }
    if (spec_.zero_point) n += "/zp";
    return n;
  }
  bool per_tensor() const { return spec_.granularity == Granularity::kPerTensor; }
  const quant::QuantSpec& spec() const { return spec_; }
  float tensor_scale(int layer) const { return scale_[static_cast<size_t>(layer)]; }

  /// per_tensor: widens layer's scale to cover x; returns the previous scale when the stored
  /// history must be re-expressed (rescale()), else 0.
  float observe(int layer, const at::Tensor& x) {
    if (!per_tensor()) return 0.0f;
    float& s = scale_[static_cast<size_t>(layer)];
    const float want = quant::tensor_scale_for(x.abs().max().item<float>(), spec_);
    if (want <= s) return 0.0f;
    const float old = s;
    s = want;
    return old;
  }
  Parts encode(int layer, const at::Tensor& x) const {
    // ops::quantize_kv gives the codes of quant::quantize bit for bit (tests/test_ops_ref.cpp):
    // on the CPU one pass over the rows instead of ~15 ATen ops per call (a decode step
    // encodes one token per layer and side), on CUDA the quantize kernel for the head dims it
    // supports.
    const bool cpu = x.device().is_cpu() && x.dim() == 4;
    const bool cuda = x.is_cuda() && ops::has_cuda_ops() && (head_dim_ == 64 || head_dim_ == 128) &&
                      (x.scalar_type() == at::kHalf || x.scalar_type() == at::kFloat);
    if (cpu || cuda) {
      return parts_of(ops::quantize_kv(x, spec_, tensor_scale(layer)));
    }
    return parts_of(quant::quantize(x, spec_, tensor_scale(layer)));
  }
  at::Tensor decode(int layer, const Parts& p) const { return quant::dequantize(store(layer, p)); }
  /// Stored parts (buffers [N, H, S, width]) as the ops' storage view, read in place.
  ops::KvStore store(int layer, const Parts& p) const {
    size_t i = 1;
    at::Tensor scales, minima;
    if (spec_.groups(head_dim_) > 0) scales = p[i++];
    if (spec_.zero_point) minima = p[i++];
    return ops::KvStore::quantized(p[0], scales, minima, spec_, tensor_scale(layer));
  }
  /// Re-expresses stored per_tensor codes quantized under `old_scale` under the current scale.
  void rescale(int layer, Parts& stored, float old_scale) const {
    if (old_scale > 0.0f) quant::rescale_codes_(stored[0], kBits, old_scale, tensor_scale(layer));
  }
  /// The fp32 per-layer scale of per_tensor, counted as scale bytes.
  int64_t tensor_scale_bytes() const {
    return per_tensor() ? static_cast<int64_t>(scale_.size() * sizeof(float)) : 0;
  }
  void reset() { std::fill(scale_.begin(), scale_.end(), 0.0f); }

 private:
  // The parts of quantized storage, in parts() order: codes, scales (if any), minima (if any).
  static Parts parts_of(const quant::KvStore& s) {
    Parts p{s.data};
    if (s.scales.defined()) p.push_back(s.scales);
    if (s.minima.defined()) p.push_back(s.minima);
    return p;
  }

  int64_t head_dim_;
  quant::QuantSpec spec_;
  std::vector<float> scale_;
};

using Int8Codec = QuantCodec<8>;
using Int4Codec = QuantCodec<4>;

}  // namespace eli::cache
