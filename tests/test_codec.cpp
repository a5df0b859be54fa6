// Codec reference (include/eli/cache/quantize.h): per-element error within half a step of the
// stored scale, INT4 packing, fp16 rounding directions, per_tensor rescaling, Hadamard.

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "eli/cache/quantize.h"
#include "eli/error.h"
#include "eli/quant_layout.h"

namespace eli::quant {
namespace {

// Rows with awkward statistics: mixed scales per row, an offset (zero-point matters), outliers.
at::Tensor awkward_rows(int64_t rows, int64_t d, uint64_t seed) {
  at::manual_seed(seed);
  auto x = at::randn({3, rows, d}) * at::rand({3, rows, 1}) * 4 + at::randn({3, rows, 1});
  x.select(2, 5).mul_(9.0);  // an outlier channel
  return x;
}

// The step (scale) that covers each element, broadcast to x's shape.
at::Tensor step_of(const KvStore& q, const QuantSpec& spec, const at::Tensor& x, float ts) {
  if (spec.granularity == Granularity::kPerTensor) return at::full_like(x, ts);
  const int64_t d = x.size(-1);
  const int64_t w = spec.group_width(d);
  return q.scales.to(at::kFloat).repeat_interleave(w, -1);
}

void expect_half_step(const QuantSpec& spec, const std::string& what) {
  for (int64_t d : {32, 64, 128}) {
    if (spec.granularity == Granularity::kGroup && d % spec.group_size) continue;
    auto x = awkward_rows(37, d, 1000 + d);
    float ts = 0.0f;
    if (spec.granularity == Granularity::kPerTensor) {
      ts = tensor_scale_for(x.abs().max().item<float>(), spec);
    }
    KvStore q = quantize(x, spec, ts);
    auto xr = dequantize(q);
    ASSERT_EQ(xr.sizes(), x.sizes()) << what;
    auto step = step_of(q, spec, x, ts);
    auto excess = ((x - xr).abs() - step * 0.5 * (1 + 1e-6)).flatten();
    const int64_t worst = excess.argmax().item<int64_t>();
    EXPECT_LE(excess[worst].item<float>(), 0.0f)
        << what << " d=" << d << ": worst element " << worst
        << " x=" << x.flatten()[worst].item<float>() << " x'=" << xr.flatten()[worst].item<float>()
        << " step=" << step.flatten()[worst].item<float>();
    // The error is not trivially zero: quantization happened.
    EXPECT_GT((x - xr).abs().max().item<float>(), 0.0f) << what;
    if (q.scales.defined()) {
      EXPECT_EQ(q.scales.scalar_type(), at::kHalf) << what;
    }
  }
}

TEST(Codec, HalfStepErrorEveryGranularity) {
  for (int bits : {8, 4}) {
    for (auto g : {Granularity::kPerTensor, Granularity::kPerTokenHead, Granularity::kGroup}) {
      for (bool zp : {false, true}) {
        if (zp && g == Granularity::kPerTensor) continue;
        for (int gs : {32, 64}) {
          if (g != Granularity::kGroup && gs == 64) continue;
          QuantSpec s;
          s.bits = bits;
          s.granularity = g;
          s.group_size = gs;
          s.zero_point = zp;
          expect_half_step(s, std::string("bits=") + std::to_string(bits) + " " + to_string(g) +
                                  (zp ? " zp" : " sym") + " gs=" + std::to_string(gs));
        }
      }
    }
  }
}

TEST(Codec, TightRangeFarFromZeroStaysWithinHalfStep) {
  // Minima near 1000 with a range of 1e-3: rounding the minimum to nearest fp16 would clamp.
  at::manual_seed(3);
  auto x = 1000.0 + at::rand({4, 7, 64}) * 1e-3;
  QuantSpec s;
  s.bits = 4;
  s.granularity = Granularity::kGroup;
  s.zero_point = true;
  KvStore q = quantize(x, s);
  auto err = (x - dequantize(q)).abs();
  auto step = q.scales.to(at::kFloat).repeat_interleave(32, -1);
  // fp32 arithmetic near 1000 adds a few ulps (2^-23 relative) on top of the half step.
  EXPECT_LE((err - step * 0.5 - x.abs() * 4 * std::ldexp(1.0, -23)).max().item<float>(), 0.0f);
}

TEST(Codec, HalfRoundingDirections) {
  at::manual_seed(4);
  auto x = at::cat({at::randn({5000}) * 100, at::randn({5000}) * 1e-6, at::tensor({0.0f, -0.0f})});
  auto up = to_half_up(x).to(at::kFloat), down = to_half_down(x).to(at::kFloat);
  EXPECT_TRUE((up >= x).all().item<bool>());
  EXPECT_TRUE((down <= x).all().item<bool>());
  // Tight: the neighbour of the result on the other side is beyond x (one fp16 step at most).
  auto near = x.to(at::kHalf).to(at::kFloat);
  EXPECT_TRUE(((up == near) | (near < x)).all().item<bool>());
  EXPECT_TRUE(((down == near) | (near > x)).all().item<bool>());
  auto gap = (up - down);
  auto ulp = at::clamp_min(x.abs() * std::ldexp(1.0, -10), std::ldexp(1.0, -24));
  EXPECT_LE((gap - ulp * 1.0001).max().item<float>(), 0.0f);
}

TEST(Codec, PackedInt4StructRoundTrip) {
  for (int e = 0; e < 16; ++e) {
    for (int o = 0; o < 16; ++o) {
      auto p = PackedInt4::pack(static_cast<uint8_t>(e), static_cast<uint8_t>(o));
      ASSERT_EQ(p.even(), e);
      ASSERT_EQ(p.odd(), o);
      ASSERT_EQ(p.bits, e | (o << 4));
    }
  }
}

TEST(Codec, PackUnpackInt4MatchesStruct) {
  at::manual_seed(5);
  auto nib = at::randint(0, 16, {3, 5, 38}, at::kByte);
  auto packed = pack_int4(nib);
  ASSERT_EQ(packed.size(-1), 19);
  auto flat_n = nib.reshape({-1, 38});
  auto flat_p = packed.reshape({-1, 19});
  for (int64_t r = 0; r < flat_n.size(0); ++r) {
    for (int64_t j = 0; j < 19; ++j) {
      auto byte =
          PackedInt4::pack(flat_n[r][2 * j].item<uint8_t>(), flat_n[r][2 * j + 1].item<uint8_t>());
      ASSERT_EQ(flat_p[r][j].item<uint8_t>(), byte.bits) << "row " << r << " byte " << j;
    }
  }
  EXPECT_TRUE(at::equal(unpack_int4(packed), nib));
  EXPECT_THROW(pack_int4(at::zeros({2, 3}, at::kByte)), Error);
}

TEST(Codec, Int4CodesUseDocumentedNibbles) {
  // Symmetric INT4: nibble = q + 8, q in [-7, 7]; asymmetric: nibble in [0, 15].
  auto x = awkward_rows(11, 64, 6);
  QuantSpec s;
  s.bits = 4;
  s.granularity = Granularity::kPerTokenHead;
  auto nib = unpack_int4(quantize(x, s).data);
  EXPECT_GE(nib.min().item<int>(), 1);
  EXPECT_LE(nib.max().item<int>(), 15);
  s.zero_point = true;
  nib = unpack_int4(quantize(x, s).data);
  EXPECT_EQ(nib.min().item<int>(), 0);
  EXPECT_EQ(nib.max().item<int>(), 15);
}

TEST(Codec, PerTensorRescaleKeepsHistoryWithinOneStep) {
  // History quantized under scale s1, re-expressed under s2 > s1: error <= s1/2 + s2/2.
  for (int bits : {8, 4}) {
    QuantSpec s;
    s.bits = bits;
    s.granularity = Granularity::kPerTensor;
    auto x = awkward_rows(9, 64, 7);
    const float s1 = tensor_scale_for(x.abs().max().item<float>(), s);
    const float s2 = s1 * 2.7f;
    KvStore q = quantize(x, s, s1);
    rescale_codes_(q.data, bits, s1, s2);
    q.tensor_scale = s2;
    auto err = (x - dequantize(q)).abs().max().item<float>();
    EXPECT_LE(err, 0.5f * (s1 + s2) * 1.0001f) << "bits " << bits;
    EXPECT_GT(err, 0.5f * s1) << "bits " << bits;  // the rescale really coarsened the codes
  }
}

TEST(Codec, PerTensorClampsBeyondScale) {
  QuantSpec s;
  s.granularity = Granularity::kPerTensor;
  auto x = at::tensor({0.5f, -3.0f, 10.0f}).view({1, 3});
  KvStore q = quantize(x, s, 1.0f / 127);
  auto xr = dequantize(q);
  EXPECT_FLOAT_EQ(xr[0][1].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(xr[0][2].item<float>(), 1.0f);
}

TEST(Codec, HadamardIsOrthonormal) {
  for (int64_t d : {1, 2, 32, 64, 128}) {
    auto h = hadamard(d, at::kCPU).to(at::kDouble);
    EXPECT_TRUE(at::allclose(at::matmul(h, h.t()), at::eye(d, at::kDouble), 1e-6, 1e-6)) << d;
    EXPECT_TRUE(at::equal(h, h.t())) << d;
  }
  EXPECT_THROW(hadamard(48, at::kCPU), Error);
}

TEST(Codec, SpecChecksHeadDim) {
  QuantSpec s;
  s.bits = 4;
  EXPECT_THROW(s.check(63), Error);
  s.granularity = Granularity::kGroup;
  s.group_size = 64;
  EXPECT_THROW(s.check(96), Error);
  s.granularity = Granularity::kPerTensor;
  s.zero_point = true;
  EXPECT_THROW(s.check(64), Error);
}

}  // namespace
}  // namespace eli::quant
