// CUDA fused decode attention against the CPU reference on the same stored data
// (label gpu; skipped without a GPU).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "eli/error.h"
#include "eli/ops.h"
#include "ops/ref.h"
#include "ops_test_util.h"

namespace eli::ops {
namespace {

using testing::all_close;
using testing::StoreKind;

using testing::quick;

struct Case {
  int64_t B, H, L, D;  // L: longest sequence
  at::ScalarType dtype;
  bool paged, bias;
  int64_t block = 16;  // paged: tokens per block (16: the kernels' one-lookup-per-tile path)
  int64_t split = 0;   // DecodeAttentionArgs::split_len (0: planned)
};

using Pair = std::pair<StoreKind, StoreKind>;

std::vector<Pair> pairs() {
  const StoreKind fp{16, Granularity::kPerTokenHead, 32, false};
  return {{fp, fp},
          {{8, Granularity::kPerTokenHead, 32, false}, {8, Granularity::kPerTokenHead, 32, false}},
          {{4, Granularity::kPerTokenHead, 32, false}, {4, Granularity::kPerTokenHead, 32, false}},
          {{8, Granularity::kPerTokenHead, 32, false}, {4, Granularity::kPerTokenHead, 32, false}},
          {{8, Granularity::kGroup, 32, true}, {4, Granularity::kGroup, 64, true}},
          {{4, Granularity::kGroup, 32, false}, {8, Granularity::kPerTokenHead, 32, true}},
          {{8, Granularity::kPerTensor, 32, false}, {4, Granularity::kPerTensor, 32, false}},
          // INT4 K with a zero point and per tensor (the dp4a scores' offset 0 and tensor scale).
          {{4, Granularity::kGroup, 64, true}, {4, Granularity::kPerTokenHead, 32, true}},
          {{4, Granularity::kPerTensor, 32, false}, {8, Granularity::kPerTensor, 32, false}},
          // Grouped symmetric INT4 V (values_mma with one weight row per group): the defaults
          // of quant_int4 (group 32) and group 64.
          {{4, Granularity::kGroup, 32, false}, {4, Granularity::kGroup, 32, false}},
          {{8, Granularity::kPerTokenHead, 32, false}, {4, Granularity::kGroup, 64, false}}};
}

// The q that INT4 K's scores multiply (cuda/attention/scores.cuh, prepare_q_dp4a): each 32-element
// slice of q x sm_scale x log2 e in fixed point against the slice's largest |q|, 16 bits for fp16
// q and 24 for fp32, rounded to nearest even; returned as fp32 in q's own units.
at::Tensor dp4a_rounded_q(const at::Tensor& q) {
  const at::Tensor qf = q.to(at::kCPU).to(at::kFloat).contiguous();
  const int64_t D = q.size(-1);
  at::Tensor out = at::empty_like(qf);
  const float qmax = q.scalar_type() == at::kHalf ? 32767.f : 8388607.f;
  const float qscale =
      static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))) * 1.4426950408889634f;
  const float* src = qf.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t s0 = 0; s0 < qf.numel(); s0 += 32) {
    float amax = 0.f;
    for (int64_t i = s0; i < s0 + 32; ++i) amax = std::max(amax, std::fabs(src[i] * qscale));
    const float inv = amax > 0.f ? qmax / amax : 0.f, sq = amax / qmax;
    for (int64_t i = s0; i < s0 + 32; ++i) {
      const float v = std::min(qmax, std::max(-qmax, std::nearbyint(src[i] * qscale * inv)));
      dst[i] = static_cast<float>(static_cast<double>(v) * sq / qscale);
    }
  }
  return out;
}

void check_attention(const Pair& pair, const Case& c) {
  const at::Device cuda(at::kCUDA);
  const int64_t bs = c.block, max_blocks = (c.L + bs - 1) / bs;
  const int64_t n0 = c.paged ? c.B * max_blocks + 5 : c.B;
  const int64_t slots = c.paged ? bs : c.L + 3;
  const int64_t fill = c.paged ? max_blocks * bs : slots;
  at::Tensor table;
  if (c.paged) table = testing::shuffled_table(c.B, max_blocks, n0);
  const at::Tensor kx = testing::random_rows({c.B, c.H, fill, c.D}, c.dtype).to(cuda);
  const at::Tensor vx = testing::random_rows({c.B, c.H, fill, c.D}, c.dtype).to(cuda);
  // Queries of unit scale keep logits O(1..10), as in a trained model; K/V rows vary widely.
  const at::Tensor q = (0.5 * at::randn({c.B, c.H, c.D})).to(c.dtype).to(cuda);
  const StoreKind& kk = pair.first;
  const StoreKind& vk = pair.second;
  KvStore k = testing::make_store(kk, n0, c.H, slots, c.D, c.dtype, cuda,
                                  testing::covering_scale(kx.to(at::kFloat), kk.bits));
  KvStore v = testing::make_store(vk, n0, c.H, slots, c.D, c.dtype, cuda,
                                  testing::covering_scale(vx.to(at::kFloat), vk.bits));
  const at::Tensor table_gpu = c.paged ? table.to(cuda) : at::Tensor();
  quantize_kv_out(kx, k, SlotMap{0, table_gpu});
  quantize_kv_out(vx, v, SlotMap{0, table_gpu});

  // Lengths: the longest, 1, 0 (when B > 2) and random in between.
  std::vector<int> lens(static_cast<size_t>(c.B));
  for (int64_t b = 0; b < c.B; ++b)
    lens[static_cast<size_t>(b)] = static_cast<int>(at::randint(1, c.L + 1, {1}).item<int64_t>());
  lens[0] = static_cast<int>(c.L);
  if (c.B > 1) lens[1] = 1;
  if (c.B > 2) lens[2] = 0;
  DecodeAttentionArgs cpu_args;
  cpu_args.seq_lens = at::tensor(lens, at::TensorOptions().dtype(at::kInt));
  cpu_args.block_table = table;
  if (c.bias) cpu_args.bias = at::log(at::randint(1, 65, {c.B, c.L}, at::kFloat));
  cpu_args.max_len = c.L;
  DecodeAttentionArgs gpu_args = cpu_args;
  gpu_args.split_len = c.split;
  gpu_args.seq_lens = cpu_args.seq_lens.to(cuda);
  gpu_args.block_table = table_gpu;
  if (c.bias) gpu_args.bias = cpu_args.bias.to(cuda);

  at::Tensor got = at::full_like(q, NAN);
  at::Tensor got_lse = at::full({c.B, c.H}, NAN, at::TensorOptions(at::kFloat).device(cuda));
  decode_attention_out(q, k, v, gpu_args, got, &got_lse);
  at::Tensor want = at::full(q.sizes(), NAN, q.scalar_type()), want_lse;
  // The plain specification (ops::ref: dequantize, then fp32 softmax attention), not the fast
  // CPU kernel.
  ref::decode_attention_out(q.cpu(), testing::store_to(k, at::kCPU), testing::store_to(v, at::kCPU),
                            cpu_args, want, &want_lse);

  const bool half = c.dtype == at::kHalf;
  const std::string what =
      kk.name() + "/" + vk.name() + " " + c10::toString(c.dtype) + " B=" + std::to_string(c.B) +
      " L=" + std::to_string(c.L) + " D=" + std::to_string(c.D) + (c.paged ? " paged" : "") +
      (c.bias ? " bias" : "") + (c.split > 0 ? " split " + std::to_string(c.split) : "");
  // fp16 output: its own rounding (2^-11 relative) plus fp32 accumulation; fp32: accumulation.
  EXPECT_TRUE(all_close(got, want, half ? 2e-3 : 1e-4, half ? 4e-3 : 1e-4)) << what;
  if (kk.bits == 4) {
    // INT4 K's logits are the rounded q's (dp4a_rounded_q): up to ~5e-4 from the exact q's at
    // logits of ~20 with fp16 q, beyond the fp32 accumulation's 2e-4. The lse is held to the
    // rounded q's reference at the accumulation's tolerance.
    at::Tensor want_out = at::empty(q.sizes(), at::kFloat);
    ref::decode_attention_out(dp4a_rounded_q(q), testing::store_to(k, at::kCPU),
                              testing::store_to(v, at::kCPU), cpu_args, want_out, &want_lse);
  }
  EXPECT_TRUE(all_close(got_lse, want_lse, 2e-4, 1e-5)) << what << " lse";
}

TEST(AttentionCuda, MatchesReference) {
  ELI_REQUIRE_GPU();
  at::manual_seed(21);
  std::vector<Case> cases;
  for (int64_t D : {64, 128}) {
    for (at::ScalarType dt : {at::kHalf, at::kFloat}) {
      for (bool paged : {false, true}) {
        cases.push_back({1, 2, 1, D, dt, paged, false});
        cases.push_back({3, 3, 17, D, dt, paged, true});
        if (!quick()) cases.push_back({3, 2, 1000, D, dt, paged, paged});
      }
    }
  }
  // Blocks of 6 and 20 tokens: neither a multiple of 16 (one row lookup per mma tile) nor of 4
  // (per run of unrolled tokens), so every row is looked up on its own.
  for (int64_t block : {6, 20}) {
    cases.push_back({3, 2, 53, 64, at::kHalf, true, true, block});
    cases.push_back({2, 2, 45, 128, at::kFloat, true, false, block});
  }
  // Forced split lengths (DecodeAttentionArgs::split_len, the split sweep's): every length the
  // plans choose from, and 384 / 1024 past a short last split, paged or not.
  for (int64_t split : {64, 128, 384, 768, 1024}) {
    cases.push_back({2, 2, 1100, 64, at::kHalf, split % 128 == 0, true, 16, split});
    cases.push_back({2, 2, 1100, 128, at::kFloat, false, false, 16, split});
  }
  // More than 32 splits: the reduce's block of 1024 threads (reduce_groups_wide).
  cases.push_back({2, 2, 2500, 64, at::kHalf, false, true, 16, 64});
  cases.push_back({2, 2, 2500, 128, at::kFloat, true, false, 16, 64});
  if (!quick()) {
    cases.push_back({32, 2, 4097, 128, at::kHalf, false, false});
    cases.push_back({32, 2, 4097, 64, at::kHalf, true, true});
    cases.push_back({3, 2, 1000, 128, at::kHalf, true, false, 6});
  }
  for (const Case& c : cases)
    for (const Pair& p : pairs()) check_attention(p, c);
}

TEST(AttentionCuda, FourDimQueryAndDefaultMaxLen) {
  ELI_REQUIRE_GPU();
  at::manual_seed(22);
  const at::Device cuda(at::kCUDA);
  const int64_t B = 2, H = 2, cap = 70, D = 64;
  const at::Tensor q = (0.5 * at::randn({B, H, 1, D})).to(at::kHalf).to(cuda);
  const KvStore k = KvStore::fp(testing::random_rows({B, H, cap, D}, at::kHalf).to(cuda));
  const KvStore v = KvStore::fp(testing::random_rows({B, H, cap, D}, at::kHalf).to(cuda));
  DecodeAttentionArgs a;
  a.seq_lens = at::tensor({70, 33}, at::TensorOptions().dtype(at::kInt)).to(cuda);
  const at::Tensor got = decode_attention(q, k, v, a);
  ASSERT_EQ(got.sizes(), q.sizes());
  // The plain fp32 formula on the same data.
  for (int64_t b = 0; b < B; ++b) {
    const int64_t len = b == 0 ? 70 : 33;
    const at::Tensor kb = k.data[b].narrow(1, 0, len).to(at::kFloat);
    const at::Tensor vb = v.data[b].narrow(1, 0, len).to(at::kFloat);
    const at::Tensor p = at::softmax(at::matmul(q[b].to(at::kFloat), kb.transpose(1, 2)) / 8.0, -1);
    EXPECT_TRUE(all_close(got[b], at::matmul(p, vb), 2e-3, 4e-3)) << "sequence " << b;
  }
}

TEST(AttentionCuda, MismatchedDtypeIsAnError) {
  ELI_REQUIRE_GPU();
  const at::Device cuda(at::kCUDA);
  const at::Tensor q = at::randn({1, 2, 64}, at::TensorOptions(at::kFloat).device(cuda));
  const KvStore kv =
      KvStore::fp(at::randn({1, 2, 8, 64}, at::TensorOptions(at::kHalf).device(cuda)));
  DecodeAttentionArgs a;
  a.seq_lens = at::full({1}, 8, at::TensorOptions().dtype(at::kInt).device(cuda));
  EXPECT_THROW(decode_attention(q, kv, kv, a), eli::Error);
}

TEST(AttentionCuda, BadSplitLenIsAnErrorAndTheNextCallWorks) {
  ELI_REQUIRE_GPU();
  const at::Device cuda(at::kCUDA);
  const at::Tensor q = at::randn({1, 2, 64}, at::TensorOptions(at::kHalf).device(cuda));
  const KvStore kv =
      KvStore::fp(at::randn({1, 2, 300, 64}, at::TensorOptions(at::kHalf).device(cuda)));
  DecodeAttentionArgs a;
  a.seq_lens = at::full({1}, 300, at::TensorOptions().dtype(at::kInt).device(cuda));
  a.split_len = 100;
  EXPECT_THROW(decode_attention(q, kv, kv, a), eli::Error);
  a.split_len = 0;
  const at::Tensor planned = decode_attention(q, kv, kv, a);
  a.split_len = 64;
  EXPECT_TRUE(all_close(decode_attention(q, kv, kv, a), planned, 2e-3, 4e-3));
}

// The step's new token merged by the reduce kernel (and stored into the fp cache in the same
// launch) at 2 planned splits (4 groups) and at 40 (the reduce's block of 1024 threads): equal
// to attention over the history with the token appended, and the token lands at its slot.
TEST(AttentionCuda, NewTokenMergeAndAppendAtFewAndManySplits) {
  ELI_REQUIRE_GPU();
  at::manual_seed(23);
  const at::Device cuda(at::kCUDA);
  const int64_t B = 2, H = 3, cap = 2600, D = 64;
  for (const int64_t len : {100, 2500}) {
    const at::Tensor kx = testing::random_rows({B, H, cap, D}, at::kHalf).to(cuda);
    const at::Tensor vx = testing::random_rows({B, H, cap, D}, at::kHalf).to(cuda);
    const at::Tensor q = (0.5 * at::randn({B, H, 1, D})).to(at::kHalf).to(cuda);
    const std::vector<int> lens = {static_cast<int>(len), static_cast<int>(len / 2)};
    const at::Tensor k_new = kx.narrow(2, len, 1).clone(), v_new = vx.narrow(2, len, 1).clone();
    at::Tensor k_all = kx.clone(), v_all = vx.clone();
    for (int64_t b = 0; b < B; ++b) {
      k_all[b].narrow(1, lens[size_t(b)], 1).copy_(k_new[b]);
      v_all[b].narrow(1, lens[size_t(b)], 1).copy_(v_new[b]);
    }
    DecodeAttentionArgs hist, all;
    hist.seq_lens = at::tensor(lens, at::TensorOptions().dtype(at::kInt)).to(cuda);
    hist.split_len = 64;
    hist.max_len = len;  // the reduce's width follows plan_len's splits (the capacity's: 41)
    hist.plan_len = len;
    all.seq_lens = hist.seq_lens + 1;
    SlotMap append;
    append.t0_dev = hist.seq_lens.clone();
    const KvStore k = KvStore::fp(kx.clone()), v = KvStore::fp(vx.clone());
    at::Tensor lse;
    const at::Tensor got = decode_attention_with_new(q, k, v, hist, k_new, v_new, &lse, &append);
    all.seq_lens = all.seq_lens.cpu();
    at::Tensor want = at::full(q.sizes(), NAN, q.scalar_type());
    ref::decode_attention_out(q.cpu(), KvStore::fp(k_all.cpu()), KvStore::fp(v_all.cpu()), all,
                              want);
    EXPECT_TRUE(all_close(got.cpu(), want, 2e-3, 4e-3)) << "length " << len;
    EXPECT_TRUE(at::equal(k.data, k_all)) << "length " << len;
    EXPECT_TRUE(at::equal(v.data, v_all)) << "length " << len;
  }
}

// The new token quantized into K / V storage by the attention's reduce (the graph step's append
// of a quantized cache): the codes, scales and minima quantize_kv_out writes, bit for bit, for
// every kind pairs() covers (per tensor, per token-head, groups of 32 / 64, with and without zero
// points, mixed), contiguous and paged, at 4 planned splits and at 40 (the reduce's block of 1024
// threads); the attention output is the one without the append.
TEST(AttentionCuda, QuantizedAppendInTheLaunchEqualsQuantizeKvOut) {
  ELI_REQUIRE_GPU();
  at::manual_seed(37);
  const at::Device cuda(at::kCUDA);
  const int64_t B = 2, H = 3, cap = 2560, bs = 16, max_blocks = cap / bs;
  for (const int64_t D : {64, 128}) {
    for (const Pair& pair : pairs()) {
      if (pair.first.bits == 16) continue;  // fp: NewTokenMergeAndAppendAtFewAndManySplits
      for (const bool paged : {false, true}) {
        const int64_t n0 = paged ? B * max_blocks + 5 : B, slots = paged ? bs : cap;
        const at::Tensor table =
            paged ? testing::shuffled_table(B, max_blocks, n0).to(cuda) : at::Tensor();
        const at::Tensor kx = testing::random_rows({B, H, cap, D}, at::kHalf).to(cuda);
        const at::Tensor vx = testing::random_rows({B, H, cap, D}, at::kHalf).to(cuda);
        const at::Tensor q = (0.5 * at::randn({B, H, 1, D})).to(at::kHalf).to(cuda);
        const at::Tensor k_new = testing::random_rows({B, H, 1, D}, at::kHalf).to(cuda);
        const at::Tensor v_new = testing::random_rows({B, H, 1, D}, at::kHalf).to(cuda);
        auto store = [&](const StoreKind& kind, const at::Tensor& x) {
          KvStore s = testing::make_store(kind, n0, H, slots, D, at::kHalf, cuda,
                                          testing::covering_scale(x.to(at::kFloat), kind.bits));
          quantize_kv_out(x, s, SlotMap{0, table});
          return s;
        };
        for (const int64_t len : {200, 2500}) {
          const std::string what = pair.first.name() + "/" + pair.second.name() +
                                   " D=" + std::to_string(D) + (paged ? " paged" : "") + " len " +
                                   std::to_string(len);
          const KvStore ka = store(pair.first, kx), va = store(pair.second, vx);
          const KvStore kb = store(pair.first, kx), vb = store(pair.second, vx);
          DecodeAttentionArgs a;
          a.seq_lens = at::tensor(std::vector<int>{int(len), int(len / 3)},
                                  at::TensorOptions().dtype(at::kInt))
                           .to(cuda);
          a.block_table = table;
          a.split_len = 64;
          a.max_len = len;
          a.plan_len = len;
          SlotMap append;
          append.block_table = table;
          append.t0_dev = a.seq_lens.clone();
          const at::Tensor got =
              decode_attention_with_new(q, ka, va, a, k_new, v_new, nullptr, &append);
          const at::Tensor plain = decode_attention_with_new(q, kb, vb, a, k_new, v_new);
          EXPECT_TRUE(at::equal(got, plain)) << what << " output";
          quantize_kv_out(k_new, kb, append);
          quantize_kv_out(v_new, vb, append);
          // fp16 scales as bits: the slots never written hold NaN in both.
          auto bits = [](const at::Tensor& t) { return t.view(at::kShort); };
          for (const auto& [x, y] : {std::pair{ka, kb}, std::pair{va, vb}}) {
            EXPECT_TRUE(at::equal(x.data, y.data)) << what << " codes";
            if (x.scales.defined()) {
              EXPECT_TRUE(at::equal(bits(x.scales), bits(y.scales))) << what << " scales";
            }
            if (x.minima.defined()) {
              EXPECT_TRUE(at::equal(bits(x.minima), bits(y.minima))) << what << " minima";
            }
          }
        }
      }
    }
  }
}

// Appends the reduce does not take are errors naming them, and the next call works: fp32 new
// tokens into quantized storage, and unquantized K with quantized V.
TEST(AttentionCuda, BadQuantizedAppendsAreErrors) {
  ELI_REQUIRE_GPU();
  const at::Device cuda(at::kCUDA);
  const int64_t B = 1, H = 2, cap = 64, D = 64;
  const StoreKind int8{8, Granularity::kPerTokenHead, 32, false};
  const at::Tensor kx = testing::random_rows({B, H, cap, D}, at::kHalf).to(cuda);
  KvStore k = testing::make_store(int8, B, H, cap, D, at::kHalf, cuda, 1.f);
  KvStore v = testing::make_store(int8, B, H, cap, D, at::kHalf, cuda, 1.f);
  quantize_kv_out(kx, k, SlotMap{0, {}});
  quantize_kv_out(kx, v, SlotMap{0, {}});
  const at::Tensor q = at::randn({B, H, 1, D}).to(at::kHalf).to(cuda);
  const at::Tensor kn = at::randn({B, H, 1, D}, at::TensorOptions().device(cuda));
  DecodeAttentionArgs a;
  a.seq_lens = at::full({B}, 10, at::TensorOptions().dtype(at::kInt).device(cuda));
  SlotMap append;
  append.t0_dev = a.seq_lens.clone();
  EXPECT_THROW(decode_attention_with_new(q, k, v, a, kn, kn, nullptr, &append), eli::Error);
  const KvStore k_fp = KvStore::fp(kx.clone());
  const at::Tensor kh = kn.to(at::kHalf);
  EXPECT_THROW(decode_attention_with_new(q, k_fp, v, a, kh, kh, nullptr, &append), eli::Error);
  EXPECT_TRUE(at::equal(k_fp.data, kx)) << "nothing written by the refused call";
  const at::Tensor ok = decode_attention_with_new(q, k, v, a, kh, kh, nullptr, &append);
  EXPECT_TRUE(at::isfinite(ok).all().item<bool>());
}

}  // namespace
}  // namespace eli::ops
