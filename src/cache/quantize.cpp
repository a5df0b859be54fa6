#include "eli/cache/quantize.h"

#include <cmath>

#include "eli/error.h"
#include "eli/quant_layout.h"

namespace eli::quant {
namespace {

constexpr float kHalfMax = 65504.0f;

int sym_max(int bits) { return bits == 8 ? kInt8SymMax : kInt4SymMax; }
int asym_levels(int bits) { return bits == 8 ? kInt8AsymLevels : kInt4AsymLevels; }

// Rows [..., D] -> [..., G, W] so that one scale covers the last dim.
at::Tensor grouped(const at::Tensor& x, int64_t groups) {
  auto sizes = x.sizes().vec();
  const int64_t d = sizes.back();
  sizes.back() = groups;
  sizes.push_back(d / groups);
  return x.reshape(sizes);
}

at::Tensor ungrouped(const at::Tensor& x) {
  auto sizes = x.sizes().vec();
  const int64_t w = sizes.back();
  sizes.pop_back();
  sizes.back() *= w;
  return x.reshape(sizes);
}

}  // namespace

// Moves fp16 values one representable step towards +inf / -inf through their bit patterns
// (int16 view), so the result is exactly the neighbour (as the CUDA kernels compute it).
at::Tensor to_half_up(const at::Tensor& x) {
  auto xf = x.to(at::kFloat).clamp(-kHalfMax, kHalfMax);
  auto h = xf.to(at::kHalf).contiguous();
  auto hf = h.to(at::kFloat);
  auto bits = h.view(at::kShort);
  auto zero_up = at::full_like(bits, 0x0001);  // +-0 -> smallest positive subnormal
  auto up = at::where(hf > 0, bits + 1, at::where(hf < 0, bits - 1, zero_up));
  return at::where(hf < xf, up, bits).view(at::kHalf);
}

at::Tensor to_half_down(const at::Tensor& x) {
  auto xf = x.to(at::kFloat).clamp(-kHalfMax, kHalfMax);
  auto h = xf.to(at::kHalf).contiguous();
  auto hf = h.to(at::kFloat);
  auto bits = h.view(at::kShort);
  auto zero_down =
      at::full_like(bits, static_cast<int16_t>(0x8001));  // smallest negative subnormal
  auto down = at::where(hf > 0, bits - 1, at::where(hf < 0, bits + 1, zero_down));
  return at::where(hf > xf, down, bits).view(at::kHalf);
}

float tensor_scale_for(float absmax, const QuantSpec& spec) {
  const float s = absmax / static_cast<float>(sym_max(spec.bits));
  return std::min(std::max(s, spec.eps), kHalfMax);
}

KvStore quantize(const at::Tensor& x, const QuantSpec& spec, float tensor_scale) {
  const int64_t d = x.size(-1);
  spec.check(d);
  auto xf = x.to(at::kFloat);
  KvStore out;
  out.bits = spec.bits;
  out.spec = spec;
  out.tensor_scale = tensor_scale;
  at::Tensor q;  // integer-valued fp32, [..., D]
  if (spec.granularity == Granularity::kPerTensor) {
    ELI_CHECK(tensor_scale > 0.0f, "per_tensor quantization needs a scale > 0, got {}",
              tensor_scale);
    const double qmax = sym_max(spec.bits);
    q = at::round(xf / tensor_scale).clamp(-qmax, qmax);
  } else {
    const int64_t g = spec.groups(d);
    auto xg = grouped(xf, g);  // [..., G, W]
    if (!spec.zero_point) {
      const double qmax = sym_max(spec.bits);
      auto s = at::clamp_min(xg.abs().amax(-1, true) / qmax, spec.eps);
      auto s16 = to_half_up(s);
      q = ungrouped(at::round(xg / s16.to(at::kFloat)).clamp(-qmax, qmax));
      out.scales = s16.squeeze(-1);
    } else {
      const double levels = asym_levels(spec.bits);
      auto m16 = to_half_down(xg.amin(-1, true));
      auto mf = m16.to(at::kFloat);
      auto s16 = to_half_up(at::clamp_min((xg.amax(-1, true) - mf) / levels, spec.eps));
      q = ungrouped(at::round((xg - mf) / s16.to(at::kFloat)).clamp(0.0, levels));
      out.scales = s16.squeeze(-1);
      out.minima = m16.squeeze(-1);
    }
  }
  if (spec.bits == 8) {
    out.data = spec.zero_point ? q.to(at::kByte) : q.to(at::kChar);
  } else {
    out.data = pack_int4((spec.zero_point ? q : q + kInt4Offset).to(at::kByte));
  }
  return out;
}

at::Tensor dequantize(const KvStore& qt) {
  ELI_CHECK(qt.bits == 8 || qt.bits == 4, "dequantize: storage of {} bits is not quantized",
            qt.bits);
  QuantSpec spec = qt.spec;
  spec.bits = qt.bits;
  const float tensor_scale = qt.tensor_scale;
  at::Tensor q = spec.bits == 8 ? qt.data.to(at::kFloat) : unpack_int4(qt.data).to(at::kFloat);
  if (spec.bits == 4 && !spec.zero_point) q = q - kInt4Offset;
  if (spec.granularity == Granularity::kPerTensor) return q * tensor_scale;
  const int64_t d = q.size(-1);
  auto qg = grouped(q, spec.groups(d));
  auto x = qg * qt.scales.to(at::kFloat).unsqueeze(-1);
  if (spec.zero_point) x = x + qt.minima.to(at::kFloat).unsqueeze(-1);
  return ungrouped(x);
}

void rescale_codes_(at::Tensor& codes, int bits, float from, float to) {
  ELI_CHECK(to >= from && from > 0.0f, "rescale_codes_: scales must grow ({} -> {})", from, to);
  if (to == from) return;
  const double ratio = static_cast<double>(from) / static_cast<double>(to);
  if (bits == 8) {
    codes.copy_(at::round(codes.to(at::kFloat) * ratio).to(at::kChar));
  } else {
    auto q = unpack_int4(codes).to(at::kFloat) - kInt4Offset;
    codes.copy_(pack_int4((at::round(q * ratio) + kInt4Offset).to(at::kByte)));
  }
}

at::Tensor pack_int4(const at::Tensor& nibbles) {
  ELI_CHECK(nibbles.scalar_type() == at::kByte, "pack_int4 needs uint8 nibbles");
  ELI_CHECK(nibbles.size(-1) % 2 == 0, "pack_int4 needs an even last dim, got {}",
            nibbles.size(-1));
  auto pairs = grouped(nibbles, nibbles.size(-1) / 2);  // [..., D/2, 2]
  auto even = pairs.select(-1, 0).bitwise_and(0xF);
  auto odd = pairs.select(-1, 1).bitwise_and(0xF);
  return even.bitwise_or(odd.mul(16)).contiguous();
}

at::Tensor unpack_int4(const at::Tensor& packed) {
  ELI_CHECK(packed.scalar_type() == at::kByte, "unpack_int4 needs uint8 bytes");
  auto even = packed.bitwise_and(0xF);
  auto odd = packed.div(16, "floor");
  return ungrouped(at::stack({even, odd}, -1));
}

at::Tensor hadamard(int64_t d, at::Device device) {
  ELI_CHECK(d >= 1 && (d & (d - 1)) == 0, "Hadamard rotation needs a power-of-2 head_dim, got {}",
            d);
  auto h = at::ones({1, 1}, at::kFloat);
  while (h.size(0) < d) {
    h = at::cat({at::cat({h, h}, 1), at::cat({h, -h}, 1)}, 0);
  }
  return (h / std::sqrt(static_cast<double>(d))).to(device);
}

}  // namespace eli::quant
