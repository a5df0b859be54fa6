// CPU tests of the op references (src/ops/*_ref.cpp): the specifications of the CUDA kernels.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "eli/cache/quantize.h"
#include "eli/error.h"
#include "eli/ops.h"
#include "eli/quant_layout.h"
#include "ops_test_util.h"

namespace eli::ops {
namespace {

using testing::all_close;
using testing::StoreKind;

float step_bound(const KvStore& s, int64_t b, int64_t h, int64_t t, int64_t g) {
  if (s.spec.granularity == Granularity::kPerTensor) return s.tensor_scale;
  return s.scales[b][h][t][g].item<float>();
}

TEST(OpsRef, RoundTripWithinHalfStep) {
  at::manual_seed(1);
  for (const StoreKind& kind : testing::quant_kinds()) {
    for (int64_t D : {64, 128}) {
      const at::Tensor x = testing::random_rows({3, 2, 17, D}, at::kFloat);
      const float ts = testing::covering_scale(x, kind.bits);
      const KvStore s = quantize_kv(x, kind.spec(), ts);
      const at::Tensor y = dequantize_kv(s, SlotMap{}, 17, at::kFloat);
      const int64_t G = kind.granularity == Granularity::kPerTensor ? 1 : kind.spec().groups(D);
      const at::Tensor err = (y - x).abs().view({3, 2, 17, G, D / G}).amax(-1);
      double worst = -1;
      for (int64_t b = 0; b < 3; ++b)
        for (int64_t h = 0; h < 2; ++h)
          for (int64_t t = 0; t < 17; ++t)
            for (int64_t g = 0; g < G; ++g) {
              const double half_step = 0.5 * step_bound(s, b, h, t, g);
              // x' = code * s + m is rounded once or twice in fp32: allow a few ulps of |x|.
              const double slack = 4e-7 * x[b][h][t].abs().max().item<double>();
              worst = std::max(worst, err[b][h][t][g].item<double>() - half_step - slack);
            }
      EXPECT_LE(worst, 0.0) << kind.name() << " D=" << D << ": error exceeds s/2 by " << worst;
    }
  }
}

// The caches encode new tokens with quantize_kv on every device, so it must give the codes of
// the ATen specification (eli/cache/quantize.h) bit for bit, scales and minima included.
TEST(OpsRef, QuantizeKvEqualsTheQuantSpecBitForBit) {
  at::manual_seed(7);
  for (const StoreKind& kind : testing::quant_kinds()) {
    for (int64_t D : {64, 128}) {
      for (at::ScalarType dt : {at::kFloat, at::kHalf}) {
        const at::Tensor x = testing::random_rows({2, 3, 11, D}, dt);
        const float ts = testing::covering_scale(x.to(at::kFloat), kind.bits);
        const quant::QuantSpec spec = kind.spec();
        // per_tensor with a scale below the data's range clamps; both must clamp alike.
        const float scale = kind.granularity == Granularity::kPerTensor ? 0.5f * ts : 0.0f;
        const KvStore got = quantize_kv(x, spec, scale);
        const KvStore want = quant::quantize(x, spec, scale);
        const std::string what = kind.name() + " D=" + std::to_string(D);
        EXPECT_TRUE(at::equal(got.data.view(at::kByte), want.data.view(at::kByte))) << what;
        if (want.scales.defined()) {
          EXPECT_TRUE(at::equal(got.scales.view(at::kShort), want.scales.view(at::kShort)))
              << what << " scales";
        }
        if (want.minima.defined()) {
          EXPECT_TRUE(at::equal(got.minima.view(at::kShort), want.minima.view(at::kShort)))
              << what << " minima";
        }
      }
    }
  }
}

TEST(OpsRef, ScalesAreTheNextHalfUp) {
  at::manual_seed(2);
  const at::Tensor x = testing::random_rows({2, 3, 9, 64}, at::kFloat);
  for (int bits : {8, 4}) {
    StoreKind kind{bits, Granularity::kPerTokenHead, 32, false};
    const KvStore s = quantize_kv(x, kind.spec());
    const at::Tensor want = x.abs().amax(-1, true) / (bits == 8 ? 127.0 : 7.0);
    const at::Tensor got = s.scales.to(at::kFloat);
    EXPECT_TRUE((got >= want).all().item<bool>()) << "INT" << bits << " scale rounded down";
    // One fp16 step below the stored scale must be below the exact scale.
    const at::Tensor below = (s.scales.view(at::kShort) - 1).view(at::kHalf).to(at::kFloat);
    EXPECT_TRUE((below < want).all().item<bool>()) << "INT" << bits << " scale not the next up";
  }
}

TEST(OpsRef, Int4PackingLowNibbleIsEvenElement) {
  at::manual_seed(3);
  // Integer rows with absmax 7 give scale exactly 1, so the codes are the values themselves.
  at::Tensor x = at::randint(-7, 8, {2, 2, 5, 64}, at::kFloat);
  x.select(-1, 5).fill_(7);
  KvStore s = quantize_kv(x, StoreKind{4, Granularity::kPerTokenHead, 32, false}.spec());
  ASSERT_TRUE((s.scales.to(at::kFloat) == 1).all().item<bool>());
  const at::Tensor codes = s.data.to(at::kInt);
  for (int64_t j = 0; j < 32; ++j) {
    const at::Tensor even = x.select(-1, 2 * j).to(at::kInt) + quant::kInt4Offset;
    const at::Tensor odd = x.select(-1, 2 * j + 1).to(at::kInt) + quant::kInt4Offset;
    ASSERT_TRUE(codes.select(-1, j).equal(even + odd * 16)) << "byte " << j;
  }
  const auto p = quant::PackedInt4::pack(static_cast<uint8_t>(x[0][0][0][0].item<int>() + 8),
                                         static_cast<uint8_t>(x[0][0][0][1].item<int>() + 8));
  EXPECT_EQ(p.bits, s.data[0][0][0][0].item<uint8_t>());
}

TEST(OpsRef, WritesOnlyTheTargetSlots) {
  at::manual_seed(4);
  const int64_t B = 3, H = 2, T = 7, D = 64, cap = 20, t0 = 11;
  for (const StoreKind& kind : {StoreKind{8, Granularity::kGroup, 32, true},
                                StoreKind{4, Granularity::kPerTokenHead, 32, false},
                                StoreKind{16, Granularity::kPerTokenHead, 32, false}}) {
    const at::Tensor x = testing::random_rows({B, H, T, D}, at::kFloat);
    KvStore s = testing::make_store(kind, B + 1, H, cap, D, at::kFloat, at::kCPU, 0.f);
    const at::Tensor before = s.data.clone();
    quantize_kv_out(x, s, SlotMap{t0, {}});
    at::Tensor got = at::empty({B, H, T, D}, at::kFloat);
    dequantize_kv_out(s, SlotMap{t0, {}}, got);
    const at::Tensor want =
        kind.bits == 16 ? x : dequantize_kv(quantize_kv(x, kind.spec()), {}, T, at::kFloat);
    EXPECT_TRUE(all_close(got, want, 0, 0)) << kind.name();
    // Slots before t0 and the spare sequence keep their poison.
    EXPECT_TRUE(s.data.narrow(2, 0, t0).equal(before.narrow(2, 0, t0)) || kind.bits == 16)
        << kind.name();
    if (kind.bits == 16) {
      EXPECT_TRUE(s.data.narrow(2, 0, t0).isnan().all().item<bool>());
    }
    EXPECT_TRUE(s.data[B].equal(before[B]) || kind.bits == 16) << kind.name();
  }
}

// K and V in one call write what two quantize_kv_out calls write (on the CPU it is those two).
TEST(OpsRef, QuantizePairEqualsTwoSingles) {
  at::manual_seed(5);
  const int64_t B = 2, H = 2, T = 3, D = 64, cap = 8, t0 = 4;
  const StoreKind kk{8, Granularity::kPerTokenHead, 32, false},
      vk{4, Granularity::kGroup, 32, true};
  const at::Tensor xk = testing::random_rows({B, H, T, D}, at::kFloat);
  const at::Tensor xv = testing::random_rows({B, H, T, D}, at::kFloat);
  KvStore k1 = testing::make_store(kk, B, H, cap, D, at::kFloat, at::kCPU, 0.f);
  KvStore v1 = testing::make_store(vk, B, H, cap, D, at::kFloat, at::kCPU, 0.f);
  KvStore k2 = testing::store_to(k1, at::kCPU), v2 = testing::store_to(v1, at::kCPU);
  k2.data = k1.data.clone(), k2.scales = k1.scales.clone();
  v2.data = v1.data.clone(), v2.scales = v1.scales.clone(), v2.minima = v1.minima.clone();
  quantize_kv_out(xk, k1, SlotMap{t0, {}});
  quantize_kv_out(xv, v1, SlotMap{t0, {}});
  quantize_kv_pair_out(xk, k2, xv, v2, SlotMap{t0, {}});
  EXPECT_TRUE(k1.data.equal(k2.data));
  EXPECT_TRUE(all_close(k1.scales, k2.scales, 0, 0));
  EXPECT_TRUE(v1.data.equal(v2.data));
  EXPECT_TRUE(all_close(v1.scales, v2.scales, 0, 0));
  EXPECT_TRUE(all_close(v1.minima, v2.minima, 0, 0));
  EXPECT_THROW(quantize_kv_pair_out(xk, k2, xv, v2, SlotMap{cap - 1, {}}), eli::Error);
}

TEST(OpsRef, PagedGatherWithShuffledTable) {
  at::manual_seed(5);
  const int64_t B = 3, H = 2, D = 64, bs = 4, max_blocks = 6, pool = 25, T1 = 9, T2 = 10;
  const at::Tensor table = testing::shuffled_table(B, max_blocks, pool);
  for (const StoreKind& kind : {StoreKind{16, Granularity::kPerTokenHead, 32, false},
                                StoreKind{8, Granularity::kPerTokenHead, 32, false},
                                StoreKind{4, Granularity::kGroup, 64, true}}) {
    const at::Tensor x = testing::random_rows({B, H, T1 + T2, D}, at::kFloat);
    KvStore paged = testing::make_store(kind, pool, H, bs, D, at::kFloat, at::kCPU, 0.f);
    KvStore flat = testing::make_store(kind, B, H, T1 + T2, D, at::kFloat, at::kCPU, 0.f);
    // Two appends, the second starting mid-block.
    quantize_kv_out(x.narrow(2, 0, T1), paged, SlotMap{0, table});
    quantize_kv_out(x.narrow(2, T1, T2), paged, SlotMap{T1, table});
    quantize_kv_out(x, flat, SlotMap{});
    const at::Tensor got = dequantize_kv(paged, SlotMap{0, table}, T1 + T2, at::kFloat);
    const at::Tensor want = dequantize_kv(flat, SlotMap{}, T1 + T2, at::kFloat);
    EXPECT_TRUE(all_close(got, want, 0, 0)) << kind.name();
    const at::Tensor mid = dequantize_kv(paged, SlotMap{5, table}, 11, at::kFloat);
    EXPECT_TRUE(all_close(mid, want.narrow(2, 5, 11), 0, 0)) << kind.name() << " offset read";
  }
}

// Plain fp64 softmax attention over the dequantized storage.
at::Tensor plain_attention(const at::Tensor& q, const KvStore& k, const KvStore& v,
                           const DecodeAttentionArgs& a, int64_t cap, at::Tensor* lse) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(-1);
  const SlotMap m{0, a.block_table};
  const at::Tensor kd = dequantize_kv(k, m, cap, at::kDouble),
                   vd = dequantize_kv(v, m, cap, at::kDouble);
  at::Tensor out = at::zeros({B, H, D}, at::kDouble);
  *lse = at::full({B, H}, -INFINITY, at::kDouble);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = a.seq_lens[b].item<int>();
    if (len == 0) continue;
    at::Tensor logits =
        at::matmul(kd[b].narrow(1, 0, len), q[b].to(at::kDouble).unsqueeze(-1)).squeeze(-1) /
        std::sqrt(static_cast<double>(D));  // [H, len]
    if (a.bias.defined()) logits = logits + a.bias[b].narrow(0, 0, len).to(at::kDouble);
    out[b] = at::matmul(at::softmax(logits, -1).unsqueeze(1), vd[b].narrow(1, 0, len)).squeeze(1);
    (*lse)[b] = at::logsumexp(logits, -1);
  }
  return out;
}

TEST(OpsRef, AttentionEqualsPlainFp64Softmax) {
  at::manual_seed(6);
  const int64_t B = 4, H = 3, D = 64, cap = 40, bs = 8;
  const std::vector<std::pair<StoreKind, StoreKind>> pairs = {
      {{16, Granularity::kPerTokenHead, 32, false}, {16, Granularity::kPerTokenHead, 32, false}},
      {{8, Granularity::kPerTokenHead, 32, false}, {8, Granularity::kPerTokenHead, 32, false}},
      {{4, Granularity::kGroup, 32, true}, {4, Granularity::kGroup, 32, true}},
      {{8, Granularity::kGroup, 64, false}, {4, Granularity::kPerTokenHead, 32, true}},
      {{8, Granularity::kPerTensor, 32, false}, {4, Granularity::kPerTensor, 32, false}}};
  for (bool paged : {false, true}) {
    for (const auto& [kk, vk] : pairs) {
      const at::Tensor q = testing::random_rows({B, H, D}, at::kFloat);
      const at::Tensor kx = testing::random_rows({B, H, cap, D}, at::kFloat);
      const at::Tensor vx = testing::random_rows({B, H, cap, D}, at::kFloat);
      DecodeAttentionArgs a;
      a.seq_lens = at::tensor({1, 17, 0, 40}, at::kInt);
      a.bias = at::rand({B, cap}, at::kFloat) * 2;
      const int64_t n0 = paged ? 23 : B, slots = paged ? bs : cap;
      if (paged) a.block_table = testing::shuffled_table(B, cap / bs, n0);
      KvStore k = testing::make_store(kk, n0, H, slots, D, at::kFloat, at::kCPU,
                                      testing::covering_scale(kx, kk.bits));
      KvStore v = testing::make_store(vk, n0, H, slots, D, at::kFloat, at::kCPU,
                                      testing::covering_scale(vx, vk.bits));
      quantize_kv_out(kx, k, SlotMap{0, a.block_table});
      quantize_kv_out(vx, v, SlotMap{0, a.block_table});
      at::Tensor out = at::empty_like(q), lse;
      decode_attention_out(q, k, v, a, out, &lse);
      at::Tensor want_lse;
      const at::Tensor want = plain_attention(q, k, v, a, cap, &want_lse);
      const std::string what = kk.name() + "/" + vk.name() + (paged ? " paged" : "");
      // fp32 tolerance relative to the output's scale: the kernel's sums (and its exp
      // polynomial) round differently per compiler and optimization level; 1e-6 absolute on
      // outputs of magnitude ~1 failed by 2e-6 with clang -O1 (the sanitizer build).
      const double scale = want.abs().max().item<double>();
      EXPECT_TRUE(all_close(out, want, 1e-5 * scale, 1e-5)) << what;
      EXPECT_TRUE(all_close(lse, want_lse, 1e-5, 1e-6)) << what << " lse";
      EXPECT_TRUE((out[2] == 0).all().item<bool>()) << what << " empty sequence";
    }
  }
}

TEST(OpsRef, MergeOfTwoKeySetsEqualsAttentionOverBoth) {
  at::manual_seed(7);
  const int64_t B = 2, H = 2, D = 64, n1 = 13, n2 = 6;
  const at::Tensor q = testing::random_rows({B, H, 1, D}, at::kFloat);
  const at::Tensor kx = testing::random_rows({B, H, n1 + n2, D}, at::kFloat);
  const at::Tensor vx = testing::random_rows({B, H, n1 + n2, D}, at::kFloat);
  auto run = [&](int64_t start, int64_t n, at::Tensor* lse) {
    DecodeAttentionArgs a;
    a.seq_lens = at::full({B}, n, at::TensorOptions().dtype(at::kInt));
    at::Tensor out = at::empty_like(q);
    decode_attention_out(q, KvStore::fp(kx.narrow(2, start, n).contiguous()),
                         KvStore::fp(vx.narrow(2, start, n).contiguous()), a, out, lse);
    return out;
  };
  at::Tensor l1, l2, l;
  const at::Tensor o1 = run(0, n1, &l1), o2 = run(n1, n2, &l2), o = run(0, n1 + n2, &l);
  const auto merged = merge_attention(o1, l1, o2, l2);
  EXPECT_TRUE(all_close(merged.first, o, 1e-6, 1e-5));
  EXPECT_TRUE(all_close(merged.second, l, 1e-5, 1e-6));
}

TEST(OpsRef, HistoryPlusNewTokenEqualsAttentionOverAll) {
  at::manual_seed(9);
  const int64_t B = 3, H = 2, D = 64, cap = 12;
  const StoreKind kind{8, Granularity::kGroup, 32, true};
  const at::Tensor q = testing::random_rows({B, H, 1, D}, at::kFloat);
  const at::Tensor kx = testing::random_rows({B, H, cap, D}, at::kFloat);
  const at::Tensor vx = testing::random_rows({B, H, cap, D}, at::kFloat);
  const std::vector<int> lens = {11, 1, 6};
  // Expected: the new token (stored at fp32 precision) appended after the quantized history.
  KvStore k = quantize_kv(kx, kind.spec()), v = quantize_kv(vx, kind.spec());
  at::Tensor k_all = dequantize_kv(k, {}, cap, at::kFloat),
             v_all = dequantize_kv(v, {}, cap, at::kFloat);
  at::Tensor k_new = at::empty({B, H, 1, D}), v_new = at::empty({B, H, 1, D});
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lens[static_cast<size_t>(b)];
    k_new[b] = kx[b].narrow(1, n, 1);
    v_new[b] = vx[b].narrow(1, n, 1);
    k_all[b].narrow(1, n, 1).copy_(k_new[b]);
    v_all[b].narrow(1, n, 1).copy_(v_new[b]);
  }
  DecodeAttentionArgs hist, all;
  hist.seq_lens = at::tensor(lens, at::TensorOptions().dtype(at::kInt));
  all.seq_lens = hist.seq_lens + 1;
  const at::Tensor got = decode_attention_with_new(q, k, v, hist, k_new, v_new);
  const at::Tensor want = decode_attention(q, KvStore::fp(k_all), KvStore::fp(v_all), all);
  EXPECT_TRUE(all_close(got, want, 1e-6, 1e-5));
}

// split_heads: element (b, t, part, h, d) of the QKV output lands at [b, h, t, d] of part.
TEST(OpsRef, SplitHeadsPlacesEveryElement) {
  const int64_t b = 2, t = 3, h = 4, d = 8;
  const at::Tensor qkv = at::arange(b * t * 3 * h * d, at::kFloat).view({b, t, 3 * h * d});
  const auto [q, k, v] = split_heads(qkv, h);
  const at::Tensor parts[3] = {q, k, v};
  for (int p = 0; p < 3; ++p) {
    ASSERT_EQ(parts[p].sizes(), (std::vector<int64_t>{b, h, t, d}));
    EXPECT_TRUE(parts[p].is_contiguous());
    for (int64_t bi = 0; bi < b; ++bi)
      for (int64_t ti = 0; ti < t; ++ti)
        for (int64_t hi = 0; hi < h; ++hi)
          for (int64_t di = 0; di < d; ++di)
            ASSERT_EQ(parts[p][bi][hi][ti][di].item<float>(),
                      float((((bi * t + ti) * 3 + p) * h + hi) * d + di));
  }
  EXPECT_THROW(split_heads(qkv, 5), eli::Error);                           // 96 is not 3 x 5 x d
  EXPECT_THROW(split_heads(qkv.view({b * t, 3 * h * d}), h), eli::Error);  // not [B, T, 3E]
  EXPECT_THROW(split_heads(qkv, 0), eli::Error);
}

// qkv_heads: the QKV product split into heads, as split_heads(linear(...)); bad shapes are
// errors naming the op.
TEST(OpsRef, QkvHeadsIsTheProductSplitIntoHeads) {
  const int64_t b = 3, h = 2, d = 8, k = 16;
  const at::Tensor w = at::randn({3 * h * d, k}), bias = at::randn({3 * h * d});
  for (const int64_t t : {1, 4}) {
    const at::Tensor x = at::randn({b, t, k});
    const auto [q, kk, v] = qkv_heads(x, w, bias, h);
    const auto [wq, wk, wv] = split_heads(linear(x, w, bias, false), h);
    EXPECT_TRUE(at::equal(q, wq) && at::equal(kk, wk) && at::equal(v, wv)) << "t " << t;
    EXPECT_EQ(q.sizes(), (std::vector<int64_t>{b, h, t, d}));
  }
  const at::Tensor x = at::randn({b, 1, k});
  EXPECT_THROW(qkv_heads(x, w, bias, 5), eli::Error);               // 48 rows: not 3 x 5 x d
  EXPECT_THROW(qkv_heads(x.view({b, k}), w, bias, h), eli::Error);  // not [B, T, K]
  EXPECT_THROW(qkv_heads(x, w, at::randn({7}), h), eli::Error);     // bias of 7
  EXPECT_THROW(qkv_heads(x, w, bias, 0), eli::Error);
}

TEST(OpsRef, LinearChecksItsShapes) {
  const at::Tensor x = at::randn({3, 1, 16}), w = at::randn({5, 16}), b = at::randn({5});
  EXPECT_TRUE(at::allclose(linear(x, w, b, false), at::linear(x, w, b)));
  EXPECT_THROW(linear(x, at::randn({5, 15}), b, false), eli::Error);      // K differs
  EXPECT_THROW(linear(x, w, at::randn({4}), true), eli::Error);           // bias size
  EXPECT_THROW(linear(x, w.to(at::kDouble), {}, false), eli::Error);      // dtypes
  EXPECT_THROW(linear(x, at::randn({5, 16, 1}), {}, false), eli::Error);  // w not 2-D
  EXPECT_THROW(linear(at::Tensor(), w, {}, false), eli::Error);
}

TEST(OpsRef, BadArgumentsAreErrors) {
  at::manual_seed(8);
  const at::Tensor x = testing::random_rows({1, 2, 3, 64}, at::kFloat);
  const StoreKind kind{8, Granularity::kPerTokenHead, 32, false};
  KvStore s = testing::make_store(kind, 1, 2, 8, 64, at::kFloat, at::kCPU, 0.f);
  EXPECT_NO_THROW(quantize_kv_out(x, s, SlotMap{5, {}}));
  EXPECT_THROW(quantize_kv_out(x, s, SlotMap{6, {}}), eli::Error);  // past capacity
  KvStore bad = s;
  bad.bits = 5;
  EXPECT_THROW(quantize_kv_out(x, bad, {}), eli::Error);
  bad = s;
  bad.data = s.data.to(at::kByte);  // symmetric INT8 codes must be int8
  EXPECT_THROW(quantize_kv_out(x, bad, {}), eli::Error);
  bad = s;
  bad.scales = s.scales.to(at::kFloat);
  EXPECT_THROW(quantize_kv_out(x, bad, {}), eli::Error);
  EXPECT_THROW(quantize_kv_out(x, s, SlotMap{0, at::zeros({1, 2}, at::kLong)}), eli::Error);
  KvStore pt = testing::make_store({8, Granularity::kPerTensor, 32, false}, 1, 2, 8, 64, at::kFloat,
                                   at::kCPU, 0.f);
  EXPECT_THROW(quantize_kv_out(x, pt, {}), eli::Error);  // per_tensor without a scale

  DecodeAttentionArgs a;
  a.seq_lens = at::full({1}, 3, at::TensorOptions().dtype(at::kInt));
  const at::Tensor q = testing::random_rows({1, 2, 64}, at::kFloat);
  EXPECT_NO_THROW(decode_attention(q, s, s, a));
  EXPECT_THROW(decode_attention(q.to(at::kBFloat16), s, s, a), eli::Error);
  EXPECT_THROW(decode_attention(q.narrow(2, 0, 32).contiguous(), s, s, a), eli::Error);
  a.seq_lens = at::full({1}, 3, at::TensorOptions().dtype(at::kLong));
  EXPECT_THROW(decode_attention(q, s, s, a), eli::Error);
  a.seq_lens = at::full({1}, 9, at::TensorOptions().dtype(at::kInt));
  EXPECT_THROW(decode_attention(q, s, s, a), eli::Error);  // longer than the storage
}

}  // namespace
}  // namespace eli::ops
