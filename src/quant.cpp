#include "eli/quant.h"

#include <utility>

#include "eli/error.h"

namespace eli::quant {

int64_t QuantSpec::group_width(int64_t head_dim) const {
  switch (granularity) {
    case Granularity::kGroup:
      return group_size;
    default:
      return head_dim;
  }
}

int64_t QuantSpec::groups(int64_t head_dim) const {
  switch (granularity) {
    case Granularity::kPerTensor:
      return 0;
    case Granularity::kPerTokenHead:
      return 1;
    case Granularity::kGroup:
      return head_dim / group_size;
  }
  return 0;
}

void QuantSpec::check(int64_t head_dim) const {
  ELI_CHECK(bits == 8 || bits == 4, "quantization bits = {} (valid: 8, 4)", bits);
  ELI_CHECK(bits == 8 || head_dim % 2 == 0, "INT4 needs an even head_dim, got {}", head_dim);
  if (granularity == Granularity::kGroup) {
    ELI_CHECK(group_size == 32 || group_size == 64, "group_size = {} (valid: 32, 64)", group_size);
    ELI_CHECK(head_dim % group_size == 0, "group_size {} does not divide head_dim {}", group_size,
              head_dim);
  }
  ELI_CHECK(!zero_point || granularity != Granularity::kPerTensor,
            "zero_point needs granularity group or per_token_head, not per_tensor");
  ELI_CHECK(eps > 0.0f, "quantization eps = {} must be > 0", eps);
}

KvStore KvStore::fp(at::Tensor values) {
  KvStore s;
  s.data = std::move(values);
  s.bits = 16;
  return s;
}

KvStore KvStore::quantized(at::Tensor codes, at::Tensor scales, at::Tensor minima,
                           const QuantSpec& spec, float tensor_scale) {
  KvStore s;
  s.data = std::move(codes);
  s.scales = std::move(scales);
  s.minima = std::move(minima);
  s.bits = spec.bits;
  s.spec = spec;
  s.tensor_scale = tensor_scale;
  return s;
}

int64_t KvStore::head_dim() const {
  ELI_CHECK(data.defined() && data.dim() >= 1, "KvStore: data undefined");
  return bits == 4 ? 2 * data.size(-1) : data.size(-1);
}

}  // namespace eli::quant
