// The CPU decode-attention kernel (ops::decode_attention on CPU tensors, attention_cpu.cpp)
// against its specification ops::ref::decode_attention_out (fp64) on random inputs of awkward
// sizes: every storage format, K and V in different formats, contiguous and paged through a
// shuffled block table, per-slot bias, per-sequence lengths (0 included), head dims not 64/128.
// Also the caches' ATen attention of a prompt (cache::attend_history) in blocks of query rows
// against one softmax over every key, written out here from the masking rules.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "eli/cache/attend.h"
#include "eli/error.h"
#include "eli/ops.h"
#include "ops/ref.h"
#include "ops_test_util.h"

namespace eli::ops {
namespace {

using testing::all_close;
using testing::StoreKind;

struct Case {
  int64_t B, T, D;  // T: capacity (the longest sequence fills it)
  StoreKind kk, vk;
  bool paged, bias;
  at::ScalarType dtype = at::kFloat;
  std::string name() const {
    return "B" + std::to_string(B) + " T" + std::to_string(T) + " D" + std::to_string(D) + " " +
           kk.name() + "/" + vk.name() + (paged ? " paged" : "") + (bias ? " bias" : "") +
           (dtype == at::kHalf ? " fp16" : "");
  }
};

/// Runs the kernel and the reference on one case; expects out and lse to agree.
void check(const Case& c, uint64_t seed) {
  at::manual_seed(seed);
  const int64_t H = 3, bs = 16;
  const int64_t blocks = (c.T + bs - 1) / bs, cap = c.paged ? blocks * bs : c.T;
  const at::Tensor q = testing::random_rows({c.B, H, 1, c.D}, c.dtype);
  const at::Tensor kx = testing::random_rows({c.B, H, cap, c.D}, at::kFloat);
  const at::Tensor vx = testing::random_rows({c.B, H, cap, c.D}, at::kFloat);
  DecodeAttentionArgs a;
  std::vector<int> lens;
  for (int64_t b = 0; b < c.B; ++b) {  // full, then shorter ones, one empty when B > 1
    lens.push_back(static_cast<int>(b == 0 ? c.T : (b == 1 ? 0 : (c.T * 2) / 3 + 1)));
  }
  a.seq_lens = at::tensor(lens, at::TensorOptions().dtype(at::kInt));
  a.max_len = c.T;
  if (c.bias) a.bias = at::randn({c.B, cap + 3}, at::kFloat).narrow(1, 2, cap);  // strided rows
  const int64_t n0 = c.paged ? c.B * blocks + 5 : c.B, slots = c.paged ? bs : cap;
  if (c.paged) a.block_table = testing::shuffled_table(c.B, blocks, n0);
  const at::ScalarType fp = c.dtype;
  KvStore k = testing::make_store(c.kk, n0, H, slots, c.D, fp, at::kCPU,
                                  testing::covering_scale(kx, c.kk.bits));
  KvStore v = testing::make_store(c.vk, n0, H, slots, c.D, fp, at::kCPU,
                                  testing::covering_scale(vx, c.vk.bits));
  quantize_kv_out(kx.to(fp), k, SlotMap{0, a.block_table});
  quantize_kv_out(vx.to(fp), v, SlotMap{0, a.block_table});

  at::Tensor out = at::empty_like(q), lse;
  decode_attention_out(q, k, v, a, out, &lse);
  at::Tensor want = at::empty_like(q), want_lse;
  ref::decode_attention_out(q, k, v, a, want, &want_lse);
  // fp16 output: both round the fp32/fp64 result to fp16 (one ulp apart at most).
  const double rtol = c.dtype == at::kHalf ? 1e-3 : 1e-5;
  const double atol = rtol * vx.abs().max().item<double>() * 0.1;
  EXPECT_TRUE(all_close(out, want, atol, rtol)) << c.name();
  EXPECT_TRUE(all_close(lse, want_lse, 1e-5, 1e-5)) << c.name() << " lse";
  if (c.B > 1) {
    EXPECT_TRUE((out[1] == 0).all().item<bool>()) << c.name() << " empty sequence";
    EXPECT_TRUE(at::isinf(lse[1]).all().item<bool>()) << c.name() << " empty sequence lse";
  }
}

std::vector<StoreKind> all_kinds() {
  std::vector<StoreKind> kinds = {{16, Granularity::kPerTokenHead, 32, false}};
  for (const StoreKind& k : testing::quant_kinds()) kinds.push_back(k);
  return kinds;
}

bool fits(const StoreKind& s, int64_t D) {
  return s.granularity != Granularity::kGroup || D % s.group_size == 0;
}

TEST(AttentionCpu, EveryFormatMatchesReference) {
  uint64_t seed = 100;
  for (int64_t D : {32, 64, 128}) {
    for (const StoreKind& kind : all_kinds()) {
      if (!fits(kind, D)) continue;
      for (bool paged : {false, true}) {
        check({3, 17, D, kind, kind, paged, /*bias=*/paged}, ++seed);
        check({1, 300, D, kind, kind, paged, /*bias=*/!paged}, ++seed);
      }
    }
  }
}

TEST(AttentionCpu, MixedFormatsLengthsAndHeadDims) {
  const std::vector<StoreKind> kinds = all_kinds();
  uint64_t seed = 500;
  for (int64_t T : {1, 17, 300}) {
    for (int64_t B : {1, 3}) {
      for (int64_t D : {32, 40, 64, 128}) {  // 40: a tail after the 16-wide dot lanes
        for (size_t i = 0; i < kinds.size(); ++i) {
          const StoreKind& kk = kinds[i];
          const StoreKind& vk = kinds[(i * 5 + 3) % kinds.size()];
          if (!fits(kk, D) || !fits(vk, D)) continue;
          check({B, T, D, kk, vk, (i + T) % 2 == 0, (i + B) % 2 == 1}, ++seed);
        }
      }
    }
  }
}

TEST(AttentionCpu, OddHeadDimAndFp16) {
  const StoreKind fp{16, Granularity::kPerTokenHead, 32, false};
  const StoreKind i8{8, Granularity::kPerTokenHead, 32, true};
  const StoreKind i4{4, Granularity::kPerTokenHead, 32, false};
  check({3, 40, 6, fp, fp, false, true}, 900);  // D below the dot lanes
  check({3, 40, 22, i8, i4, true, true}, 901);  // D not a multiple of anything but 2
  check({3, 300, 64, fp, fp, true, true, at::kHalf}, 902);
  check({1, 17, 32, i4, i8, false, false, at::kHalf}, 903);
}

TEST(AttentionCpu, PagedEqualsContiguousBitForBit) {
  at::manual_seed(77);
  const int64_t B = 3, H = 2, D = 64, bs = 16, blocks = 9, cap = blocks * bs;
  const StoreKind kind{4, Granularity::kGroup, 32, true};
  const at::Tensor q = testing::random_rows({B, H, 1, D}, at::kFloat);
  const at::Tensor kx = testing::random_rows({B, H, cap, D}, at::kFloat);
  const at::Tensor vx = testing::random_rows({B, H, cap, D}, at::kFloat);
  DecodeAttentionArgs a;
  a.seq_lens = at::tensor(std::vector<int>{static_cast<int>(cap), 100, 37},
                          at::TensorOptions().dtype(at::kInt));
  KvStore kc = testing::make_store(kind, B, H, cap, D, at::kFloat, at::kCPU, 0.f);
  KvStore vc = testing::make_store(kind, B, H, cap, D, at::kFloat, at::kCPU, 0.f);
  quantize_kv_out(kx, kc, SlotMap{});
  quantize_kv_out(vx, vc, SlotMap{});
  DecodeAttentionArgs p = a;
  p.block_table = testing::shuffled_table(B, blocks, B * blocks + 2);
  KvStore kp = testing::make_store(kind, B * blocks + 2, H, bs, D, at::kFloat, at::kCPU, 0.f);
  KvStore vp = testing::make_store(kind, B * blocks + 2, H, bs, D, at::kFloat, at::kCPU, 0.f);
  quantize_kv_out(kx, kp, SlotMap{0, p.block_table});
  quantize_kv_out(vx, vp, SlotMap{0, p.block_table});
  at::Tensor lc, lp;
  at::Tensor oc = at::empty_like(q), op = at::empty_like(q);
  decode_attention_out(q, kc, vc, a, oc, &lc);
  decode_attention_out(q, kp, vp, p, op, &lp);
  EXPECT_TRUE(at::equal(oc, op));
  EXPECT_TRUE(at::equal(lc, lp));
}

TEST(AttentionCpu, BadBlockTableAndLengthsAreErrors) {
  const int64_t B = 2, H = 2, D = 32, bs = 8;
  const at::Tensor q = testing::random_rows({B, H, D}, at::kFloat);
  const KvStore s = KvStore::fp(testing::random_rows({4, H, bs, D}, at::kFloat));
  DecodeAttentionArgs a;
  a.seq_lens = at::tensor({16, 9}, at::TensorOptions().dtype(at::kInt));
  a.block_table = at::tensor({0, 1, 2, 3}, at::TensorOptions().dtype(at::kInt)).view({B, 2});
  EXPECT_NO_THROW(decode_attention(q, s, s, a));
  a.block_table = at::tensor({0, 1, 2, 4}, at::TensorOptions().dtype(at::kInt)).view({B, 2});
  EXPECT_THROW(decode_attention(q, s, s, a), eli::Error);  // block 4 of a 4-block pool
  a.block_table = at::tensor({0, 1, -1, 3}, at::TensorOptions().dtype(at::kInt)).view({B, 2});
  EXPECT_THROW(decode_attention(q, s, s, a), eli::Error);
  a.block_table = at::tensor({0, 1, 2, 3}, at::TensorOptions().dtype(at::kInt)).view({B, 2});
  a.seq_lens = at::tensor({17, 9}, at::TensorOptions().dtype(at::kInt));
  EXPECT_THROW(decode_attention(q, s, s, a), eli::Error);  // longer than the table covers
  a.seq_lens = at::tensor({-1, 9}, at::TensorOptions().dtype(at::kInt));
  EXPECT_THROW(decode_attention(q, s, s, a), eli::Error);
}

// split_len tunes the CUDA kernel's splits; the CPU kernel has none and gives the same result
// for every valid value, and a bad value is an error here too (as on the GPU).
TEST(AttentionCpu, SplitLenIsCheckedAndIgnored) {
  const int64_t B = 2, H = 2, D = 32, cap = 40;
  const at::Tensor q = testing::random_rows({B, H, D}, at::kFloat);
  const KvStore s = KvStore::fp(testing::random_rows({B, H, cap, D}, at::kFloat));
  DecodeAttentionArgs a;
  a.seq_lens = at::tensor({40, 17}, at::TensorOptions().dtype(at::kInt));
  const at::Tensor planned = decode_attention(q, s, s, a);
  for (int64_t len : {64, 128, 1024}) {
    a.split_len = len;
    EXPECT_TRUE(at::equal(decode_attention(q, s, s, a), planned)) << len;
  }
  for (int64_t bad : {-64, 1, 63, 65, 96, 1088, 2048}) {
    a.split_len = bad;
    try {
      decode_attention(q, s, s, a);
      ADD_FAILURE() << "split_len " << bad << " was accepted";
    } catch (const eli::Error& e) {
      EXPECT_NE(std::string(e.what()).find("split_len"), std::string::npos) << e.what();
    }
  }
}

// One masked softmax over all S + T keys in fp64, the mask and bias written out from the rules
// in attend.h: history slot j (position hist_pos[j], -1 a summary) is seen by query position p
// with bias hist_bias[j] unless a window hides it (p - pos >= window, pos not a sink); new key j
// is seen by query i iff j <= i and the window does not hide it.
at::Tensor attend_reference(const at::Tensor& q, const at::Tensor& kh, const at::Tensor& vh,
                            const std::vector<int64_t>& pos, const std::vector<float>& hb,
                            const at::Tensor& kn, const at::Tensor& vn,
                            const cache::AttendMask& m) {
  const int64_t t = q.size(2), s = static_cast<int64_t>(pos.size()), d = q.size(3);
  at::Tensor bias = at::zeros({t, s + t}, at::kDouble);
  auto hidden = [&](int64_t p, int64_t kp) {
    return m.window > 0 && kp >= m.sinks && p - kp >= m.window;
  };
  for (int64_t i = 0; i < t; ++i) {
    const int64_t p = m.q_pos0 + i;
    for (int64_t j = 0; j < s; ++j) {
      const int64_t kp = pos[static_cast<size_t>(j)];
      bias[i][j] = kp >= 0 && hidden(p, kp) ? -INFINITY : double(hb[static_cast<size_t>(j)]);
    }
    for (int64_t j = 0; j < t; ++j)
      bias[i][s + j] = j > i || hidden(p, m.q_pos0 + j) ? -INFINITY : 0.0;
  }
  const at::Tensor k = at::cat({kh.to(at::kDouble), kn.to(at::kDouble)}, 2);
  const at::Tensor v = at::cat({vh.to(at::kDouble), vn.to(at::kDouble)}, 2);
  const at::Tensor scores =
      at::matmul(q.to(at::kDouble), k.transpose(-2, -1)) / std::sqrt(double(d));
  return at::matmul(at::softmax(scores + bias, -1), v);
}

// A prompt in blocks of query rows (1, 5 and all 37 rows a block by the score budget; the
// default), with and without history, plain causal and with summaries, slot bias, a window and
// sinks.
TEST(AttendHistory, BlocksOfQueryRowsEqualOneSoftmax) {
  at::manual_seed(77);
  const int64_t B = 2, H = 3, T = 37, D = 16;
  const at::Tensor q = at::randn({B, H, T, D}), kn = at::randn({B, H, T, D}),
                   vn = at::randn({B, H, T, D});
  struct Setup {
    const char* name;
    int64_t s;
    bool bias;
    cache::AttendMask mask;
  };
  for (const Setup& c :
       {Setup{"prompt", 0, false, {0, 0, 0}}, Setup{"history", 11, false, {11, 0, 0}},
        Setup{"history + bias", 11, true, {11, 0, 0}},
        Setup{"window + sinks", 11, false, {11, 9, 2}},
        Setup{"prompt window", 0, false, {0, 6, 1}}}) {
    const at::Tensor kh = at::randn({B, H, c.s, D}), vh = at::randn({B, H, c.s, D});
    std::vector<int64_t> pos;
    std::vector<float> hb;
    for (int64_t j = 0; j < c.s; ++j) {
      pos.push_back(j == 3 ? -1 : j);  // slot 3: a summary
      hb.push_back(c.bias ? 0.25f * float(j % 4) - 0.3f : 0.0f);
    }
    const at::Tensor want = attend_reference(q, kh, vh, pos, hb, kn, vn, c.mask);
    const int64_t row_bytes = H * (c.s + T) * int64_t(sizeof(float));  // one sequence's
    for (int64_t rows : {int64_t(1), int64_t(5), T, int64_t(0)}) {
      const at::Tensor got =
          cache::attend_history(q, kh, vh, pos, hb, kn, vn, c.mask, rows * row_bytes);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_TRUE(at::allclose(got.to(at::kDouble), want, 1e-5, 1e-5))
          << c.name << ", " << rows << " rows a block, max error "
          << (got.to(at::kDouble) - want).abs().max().item<double>();
    }
  }
  // The blocks are cut per sequence: a sequence's rows are the same alone as in the batch.
  const int64_t five_rows = 5 * H * T * int64_t(sizeof(float));
  const at::Tensor both =
      cache::attend_history(q, at::Tensor(), at::Tensor(), {}, {}, kn, vn, {0, 0, 0}, five_rows);
  const at::Tensor second =
      cache::attend_history(q.narrow(0, 1, 1), at::Tensor(), at::Tensor(), {}, {},
                            kn.narrow(0, 1, 1), vn.narrow(0, 1, 1), {0, 0, 0}, five_rows);
  EXPECT_TRUE(at::equal(both.narrow(0, 1, 1), second));
  const at::Tensor none =
      cache::attend_history(q.narrow(2, 0, 0), at::Tensor(), at::Tensor(), {}, {},
                            kn.narrow(2, 0, 0), vn.narrow(2, 0, 0), {0, 0, 0}, five_rows);
  EXPECT_EQ(none.sizes(), (at::IntArrayRef{B, H, 0, D}));
  EXPECT_THROW(cache::attend_history(q, at::Tensor(), at::Tensor(), {}, {}, kn, vn, {0, 0, 0}, -1),
               eli::Error);
}

}  // namespace
}  // namespace eli::ops
