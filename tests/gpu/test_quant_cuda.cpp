// CUDA quantize / dequantize against the CPU reference (label gpu; skipped without a GPU).
// The reference does the same fp32 operations, so codes, scales and values must match exactly.

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "eli/error.h"
#include "eli/ops.h"
#include "ops_test_util.h"

namespace eli::ops {
namespace {

using testing::all_close;
using testing::StoreKind;

using testing::quick;

struct Shape {
  int64_t B, H, T, D;
};

std::vector<Shape> shapes() {
  std::vector<Shape> s = {{1, 2, 1, 64}, {3, 3, 17, 128}, {3, 2, 17, 64}};
  if (!quick()) {
    s.push_back({32, 2, 1000, 64});
    s.push_back({1, 2, 4097, 128});
  }
  return s;
}

// Writes x at slot offset t0 (contiguous) or through a shuffled block table, on both devices,
// and compares every storage tensor, including the untouched (poisoned) slots.
void check_quantize(const StoreKind& kind, const Shape& sh, at::ScalarType dtype, bool paged) {
  const at::Device cuda(at::kCUDA);
  const int64_t t0 = sh.T > 100 ? 3 : 5, bs = 16;
  const int64_t need = t0 + sh.T;
  const int64_t max_blocks = (need + bs - 1) / bs;
  const int64_t n0 = paged ? sh.B * max_blocks + 3 : sh.B + 1;
  const int64_t slots = paged ? bs : need + 2;
  at::Tensor table;
  if (paged) table = testing::shuffled_table(sh.B, max_blocks, n0);
  const at::Tensor x = testing::random_rows({sh.B, sh.H, sh.T, sh.D}, dtype);
  const float ts = testing::covering_scale(x.to(at::kFloat), kind.bits) * 0.8f;  // some clamping
  KvStore cpu = testing::make_store(kind, n0, sh.H, slots, sh.D, dtype, at::kCPU, ts);
  KvStore gpu = testing::store_to(cpu, cuda);
  quantize_kv_out(x, cpu, SlotMap{t0, table});
  quantize_kv_out(x.to(cuda), gpu, SlotMap{t0, paged ? table.to(cuda) : at::Tensor()});
  const std::string what = kind.name() + " " + c10::toString(dtype) + " B=" + std::to_string(sh.B) +
                           " T=" + std::to_string(sh.T) + " D=" + std::to_string(sh.D) +
                           (paged ? " paged" : "");
  EXPECT_TRUE(gpu.data.cpu().equal(cpu.data))
      << what << ": codes differ (" << (gpu.data.cpu() != cpu.data).sum().item<int64_t>()
      << " bytes)";
  if (cpu.scales.defined()) {
    EXPECT_TRUE(all_close(gpu.scales.cpu(), cpu.scales, 0, 0)) << what << ": scales";
  }
  if (cpu.minima.defined()) {
    EXPECT_TRUE(all_close(gpu.minima.cpu(), cpu.minima, 0, 0)) << what << ": minima";
  }

  // Dequantize the same slots back on both devices into NaN-poisoned outputs.
  for (at::ScalarType out_t : {at::kFloat, at::kHalf}) {
    at::Tensor want = at::full({sh.B, sh.H, sh.T, sh.D}, NAN, out_t);
    at::Tensor got = at::full({sh.B, sh.H, sh.T, sh.D}, NAN, at::TensorOptions(out_t).device(cuda));
    dequantize_kv_out(cpu, SlotMap{t0, table}, want);
    dequantize_kv_out(gpu, SlotMap{t0, paged ? table.to(cuda) : at::Tensor()}, got);
    EXPECT_TRUE(all_close(got, want, 0, 0)) << what << ": dequantize to " << c10::toString(out_t);
  }
}

TEST(QuantCuda, QuantizeAndDequantizeMatchReference) {
  ELI_REQUIRE_GPU();
  at::manual_seed(11);
  for (const Shape& sh : shapes()) {
    const bool big = sh.B * sh.T > 1000;
    for (const StoreKind& kind : testing::quant_kinds()) {
      if (kind.granularity == Granularity::kGroup && sh.D % kind.group_size != 0) continue;
      for (at::ScalarType dtype : {at::kHalf, at::kFloat}) {
        if (big && dtype == at::kFloat) continue;  // the big shapes once per kind
        for (bool paged : {false, true}) check_quantize(kind, sh, dtype, paged);
      }
    }
  }
}

TEST(QuantCuda, FpStorageCopiesThroughSlots) {
  ELI_REQUIRE_GPU();
  at::manual_seed(12);
  const at::Device cuda(at::kCUDA);
  const int64_t B = 3, H = 2, T = 17, D = 64, bs = 4, max_blocks = 6;
  const at::Tensor table = testing::shuffled_table(B, max_blocks, 20);
  const at::Tensor x = testing::random_rows({B, H, T, D}, at::kHalf).to(cuda);
  const StoreKind fp{16, Granularity::kPerTokenHead, 32, false};
  KvStore pool = testing::make_store(fp, 20, H, bs, D, at::kHalf, cuda, 0.f);
  quantize_kv_out(x, pool, SlotMap{2, table.to(cuda)});
  const at::Tensor back = dequantize_kv(pool, SlotMap{2, table.to(cuda)}, T, at::kHalf);
  EXPECT_TRUE(all_close(back, x, 0, 0));
}

// K and V through quantize_kv_pair_out (one launch when the stores are of one kind) write the
// same bits as two quantize_kv_out calls, for every kind, fp stores through t0_dev, paged or not,
// and a pair of two kinds (two launches).
TEST(QuantCuda, PairEqualsTwoSingles) {
  ELI_REQUIRE_GPU();
  at::manual_seed(13);
  const at::Device cuda(at::kCUDA);
  const int64_t B = 3, H = 2, T = 1, D = 64, bs = 16, max_blocks = 2;
  const int64_t n0 = B * max_blocks + 1;
  const at::Tensor table = testing::shuffled_table(B, max_blocks, n0).to(cuda);
  const at::Tensor t0_dev = at::tensor({5, 0, 17}, at::TensorOptions(at::kInt)).to(cuda);
  std::vector<std::pair<StoreKind, StoreKind>> pairs;
  for (const StoreKind& k : testing::quant_kinds()) pairs.push_back({k, k});
  const StoreKind fp{16, Granularity::kPerTokenHead, 32, false};
  pairs.push_back({fp, fp});
  pairs.push_back({testing::quant_kinds()[1], testing::quant_kinds().back()});  // two kinds
  for (const auto& [kk, vk] : pairs) {
    for (bool paged : {false, true}) {
      const at::Tensor xk = testing::random_rows({B, H, T, D}, at::kHalf).to(cuda);
      const at::Tensor xv = testing::random_rows({B, H, T, D}, at::kHalf).to(cuda);
      const int64_t n = paged ? n0 : B, slots = paged ? bs : 32;
      const float ts = 0.05f;
      const KvStore k1 = testing::make_store(kk, n, H, slots, D, at::kHalf, cuda, ts);
      const KvStore v1 = testing::make_store(vk, n, H, slots, D, at::kHalf, cuda, ts);
      const KvStore k2 = testing::store_to(k1, at::kCPU), v2 = testing::store_to(v1, at::kCPU);
      const KvStore k3 = testing::store_to(k2, cuda), v3 = testing::store_to(v2, cuda);
      SlotMap m;
      m.t0_dev = t0_dev;
      if (paged) m.block_table = table;
      quantize_kv_out(xk, k1, m);
      quantize_kv_out(xv, v1, m);
      quantize_kv_pair_out(xk, k3, xv, v3, m);
      const std::string what = kk.name() + " + " + vk.name() + (paged ? " paged" : "");
      for (const auto& [a, b] : {std::pair{k1, k3}, std::pair{v1, v3}}) {
        // all_close(0, 0): exact, and the fp stores' NaN poison in untouched slots equal too.
        EXPECT_TRUE(all_close(a.data.cpu(), b.data.cpu(), 0, 0)) << what << ": codes";
        if (a.scales.defined()) {
          EXPECT_TRUE(all_close(a.scales.cpu(), b.scales.cpu(), 0, 0)) << what << ": scales";
        }
        if (a.minima.defined()) {
          EXPECT_TRUE(all_close(a.minima.cpu(), b.minima.cpu(), 0, 0)) << what << ": minima";
        }
      }
    }
  }
  // Checked before either is written: a V of the wrong shape leaves K untouched.
  const KvStore k = testing::make_store(pairs[1].first, B, H, 32, D, at::kHalf, cuda, 0.05f);
  const at::Tensor before = k.data.clone();
  SlotMap m;
  m.t0_dev = t0_dev;
  EXPECT_THROW(quantize_kv_pair_out(testing::random_rows({B, H, T, D}, at::kHalf).to(cuda), k,
                                    testing::random_rows({B, H, T, 32}, at::kHalf).to(cuda), k, m),
               eli::Error);
  EXPECT_TRUE(k.data.equal(before));
}

TEST(QuantCuda, UnsupportedHeadDimIsAnError) {
  ELI_REQUIRE_GPU();
  const at::Tensor x = at::randn({1, 2, 3, 32}, at::TensorOptions(at::kHalf).device(at::kCUDA));
  EXPECT_THROW(quantize_kv(x, StoreKind{8, Granularity::kPerTokenHead, 32, false}.spec()),
               eli::Error);
}

}  // namespace
}  // namespace eli::ops
