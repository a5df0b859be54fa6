// CPU reference of quantize / dequantize: the specification the CUDA kernels match bit for
// bit. All arithmetic is fp32 in the order the kernels use: s = absmax / qmax (or
// (max - m) / levels with m the minimum rounded down to fp16), raised to eps, clamped to 65504,
// rounded up to fp16; code = clamp(round-half-even(x / s)); x' = code * s + m (no FMA).

#include <algorithm>
#include <cmath>
#include <vector>

#include "eli/error.h"
#include "eli/quant_layout.h"
#include "ops/ref.h"
#include "ops/ref_rows.h"
#include "ops/storage.h"

namespace eli::ops {

namespace {

constexpr float kHalfMax = 65504.f;

at::Half half_from_bits(uint16_t bits) { return at::Half(bits, at::Half::from_bits()); }

/// Smallest fp16 >= x (x > 0, finite, <= 65504).
at::Half half_up(float x) {
  at::Half h(x);
  if (static_cast<float>(h) < x) h = half_from_bits(static_cast<uint16_t>(h.x + 1));
  return h;
}

/// Largest fp16 <= x (|x| <= 65504).
at::Half half_down(float x) {
  at::Half h(x);
  if (static_cast<float>(h) > x) {
    if (h.x == 0x0000) return half_from_bits(0x8001);  // +0 -> smallest negative subnormal
    h = half_from_bits(static_cast<uint16_t>((h.x & 0x8000) ? h.x + 1 : h.x - 1));
  }
  return h;
}

struct RowCodec {
  int bits;
  bool per_tensor, zero_point;
  float tensor_scale, eps;
  int64_t D, groups, width;  // width = elements per scale
};

RowCodec codec_of(const KvStore& s, int64_t D) {
  RowCodec c;
  c.bits = s.bits;
  c.per_tensor = s.spec.granularity == Granularity::kPerTensor;
  c.zero_point = s.spec.zero_point;
  c.tensor_scale = s.tensor_scale;
  c.eps = s.spec.eps;
  c.D = D;
  c.groups = c.per_tensor ? 1 : s.spec.groups(D);
  c.width = D / c.groups;
  return c;
}

void store_code(const RowCodec& c, uint8_t* codes, int64_t i, int q) {
  if (c.bits == 8) {
    codes[i] = static_cast<uint8_t>(q & 0xFF);
    return;
  }
  const uint8_t nib = static_cast<uint8_t>((c.zero_point ? q : q + quant::kInt4Offset) & 0xF);
  uint8_t& byte = codes[i / 2];
  byte = (i % 2 == 0) ? static_cast<uint8_t>((byte & 0xF0) | nib)
                      : static_cast<uint8_t>((byte & 0x0F) | (nib << 4));
}

int load_code(const RowCodec& c, const uint8_t* codes, int64_t i) {
  if (c.bits == 8) {
    return c.zero_point ? static_cast<int>(codes[i])
                        : static_cast<int>(static_cast<int8_t>(codes[i]));
  }
  const int nib = (i % 2 == 0) ? (codes[i / 2] & 0xF) : (codes[i / 2] >> 4);
  return c.zero_point ? nib : nib - quant::kInt4Offset;
}

void encode_row(const RowCodec& c, const float* x, uint8_t* codes, at::Half* scales,
                at::Half* minima) {
  const float qmax = static_cast<float>(c.bits == 8 ? quant::kInt8SymMax : quant::kInt4SymMax);
  const float levels =
      static_cast<float>(c.bits == 8 ? quant::kInt8AsymLevels : quant::kInt4AsymLevels);
  for (int64_t g = 0; g < c.groups; ++g) {
    const float* xg = x + g * c.width;
    float s = c.tensor_scale, m = 0.f;
    if (!c.per_tensor) {
      float hi = c.zero_point ? xg[0] : std::fabs(xg[0]), lo = xg[0];
      for (int64_t i = 1; i < c.width; ++i) {
        hi = std::max(hi, c.zero_point ? xg[i] : std::fabs(xg[i]));
        lo = std::min(lo, xg[i]);
      }
      if (c.zero_point) {
        const at::Half mh = half_down(std::min(std::max(lo, -kHalfMax), kHalfMax));
        m = static_cast<float>(mh);
        minima[g] = mh;
        s = (hi - m) / levels;
      } else {
        s = hi / qmax;
      }
      const at::Half sh = half_up(std::min(std::max(s, c.eps), kHalfMax));
      scales[g] = sh;
      s = static_cast<float>(sh);
    }
    for (int64_t i = 0; i < c.width; ++i) {
      const float q = c.zero_point
                          ? std::min(std::max(std::nearbyint((xg[i] - m) / s), 0.f), levels)
                          : std::min(std::max(std::nearbyint(xg[i] / s), -qmax), qmax);
      store_code(c, codes, g * c.width + i, static_cast<int>(q));
    }
  }
}

void check_cpu(const at::Tensor& t, const char* what) {
  ELI_CHECK(!t.defined() || t.device().is_cpu(), "ops::ref: {} must be on the CPU, got {}", what,
            t.device().str());
}

}  // namespace

namespace detail {

void ref_decode_row(const KvStore& s, int64_t row, int64_t D, float* out) {
  if (s.bits == 16) {
    if (s.data.scalar_type() == at::kFloat) {
      const float* p = s.data.data_ptr<float>() + row * D;
      std::copy(p, p + D, out);
    } else if (s.data.scalar_type() == at::kHalf) {
      const at::Half* p = s.data.data_ptr<at::Half>() + row * D;
      for (int64_t i = 0; i < D; ++i) out[i] = static_cast<float>(p[i]);
    } else {
      const at::Tensor r = s.data.view({-1, D})[row].to(at::kFloat).contiguous();
      std::copy(r.data_ptr<float>(), r.data_ptr<float>() + D, out);
    }
    return;
  }
  const RowCodec c = codec_of(s, D);
  const uint8_t* codes =
      static_cast<const uint8_t*>(s.data.data_ptr()) + row * (c.bits == 8 ? D : D / 2);
  for (int64_t g = 0; g < c.groups; ++g) {
    float sc = c.tensor_scale, m = 0.f;
    if (!c.per_tensor) {
      sc = static_cast<float>(s.scales.data_ptr<at::Half>()[row * c.groups + g]);
      if (c.zero_point) m = static_cast<float>(s.minima.data_ptr<at::Half>()[row * c.groups + g]);
    }
    for (int64_t i = g * c.width; i < (g + 1) * c.width; ++i) {
      const float prod = static_cast<float>(load_code(c, codes, i)) * sc;
      out[i] = prod + m;
    }
  }
}

}  // namespace detail

void ref::quantize_kv_out(const at::Tensor& x, const KvStore& dst, const SlotMap& slots) {
  ELI_CHECK(!slots.t0_dev.defined(),
            "quantize_kv_out: SlotMap.t0_dev (device-side positions) is CUDA-only");
  ELI_CHECK(x.defined() && x.dim() == 4 && at::isFloatingType(x.scalar_type()),
            "quantize_kv_out: x must be a floating [B, H, T, D] tensor");
  check_cpu(x, "x");
  check_cpu(dst.data, "destination");
  check_cpu(slots.block_table, "block_table");
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  const detail::StoreInfo info =
      detail::check_store(dst, B, H, D, slots.block_table, "quantize_kv_out destination");
  ELI_CHECK(slots.t0 >= 0 && slots.t0 + T <= info.capacity,
            "quantize_kv_out: slots [{}, {}) outside capacity {}", slots.t0, slots.t0 + T,
            info.capacity);
  if (dst.bits == 16) return detail::write_fp_rows(x, dst, info, slots);
  const at::Tensor rows = detail::row_index(info, B, H, T, slots.t0, slots.block_table, at::kCPU);
  const int64_t* row = rows.data_ptr<int64_t>();
  if (info.paged) {
    const int64_t nb = dst.data.size(0);
    for (int64_t i = 0; i < rows.numel(); ++i)
      ELI_CHECK(row[i] >= 0 && row[i] < nb * H * info.slots,
                "quantize_kv_out: block table points outside the pool of {} blocks", nb);
  }
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  const RowCodec c = codec_of(dst, D);
  const int64_t code_bytes = dst.bits == 8 ? D : D / 2;
  uint8_t* codes = static_cast<uint8_t*>(dst.data.data_ptr());
  at::Half* scales = info.groups > 0 ? dst.scales.data_ptr<at::Half>() : nullptr;
  at::Half* minima = c.zero_point ? dst.minima.data_ptr<at::Half>() : nullptr;
  std::vector<at::Half> dummy(static_cast<size_t>(c.groups));
  for (int64_t r = 0; r < rows.numel(); ++r) {
    const int64_t d = row[r];
    encode_row(c, xf.data_ptr<float>() + r * D, codes + d * code_bytes,
               scales ? scales + d * info.groups : dummy.data(),
               minima ? minima + d * info.groups : dummy.data());
  }
}

void ref::dequantize_kv_out(const KvStore& src, const SlotMap& slots, at::Tensor& out) {
  ELI_CHECK(out.defined() && out.dim() == 4 && at::isFloatingType(out.scalar_type()),
            "dequantize_kv_out: out must be a floating [B, H, T, D] tensor");
  check_cpu(out, "out");
  check_cpu(src.data, "source");
  check_cpu(slots.block_table, "block_table");
  const int64_t B = out.size(0), H = out.size(1), T = out.size(2), D = out.size(3);
  const detail::StoreInfo info =
      detail::check_store(src, B, H, D, slots.block_table, "dequantize_kv_out source");
  ELI_CHECK(slots.t0 >= 0 && slots.t0 + T <= info.capacity,
            "dequantize_kv_out: slots [{}, {}) outside capacity {}", slots.t0, slots.t0 + T,
            info.capacity);
  if (src.bits == 16) return detail::read_fp_rows(src, info, slots, out);
  const at::Tensor rows = detail::row_index(info, B, H, T, slots.t0, slots.block_table, at::kCPU);
  at::Tensor tmp = at::empty({B, H, T, D}, at::kFloat);
  float* o = tmp.data_ptr<float>();
  const int64_t* row = rows.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows.numel(); ++r) detail::ref_decode_row(src, row[r], D, o + r * D);
  out.copy_(tmp);
}

}  // namespace eli::ops
