// Decode attention (one query per sequence) at B in {1, 8, 32} x context in {512, 2048, 8192}
// (and B = 1 x 32768)
// over fp16, INT8, INT4, mixed and paged storage (16-token blocks; the _b64 variants 64, the
// paged caches' default), with at::scaled_dot_product_attention on the fp16 cache as the
// baseline. GPT-2 heads: H = 12, D = 64 (and D = 128 with H = 8 at B = 32).
// int4/mixed/int8 use one scale per token and head; int4_g32 and mixed_g32 use the layouts
// the quant_int4 and quant_mixed caches use by default (INT4 in symmetric groups of 32).
// With --split_sweep (bench/kernels/main.cpp) also BM_DecodeAttentionSplit/<variant>/<point>/S<n>:
// every point at split lengths n = 64 .. 1024 forced through DecodeAttentionArgs::split_len and
// at the planned one (S0), what scripts/gpu_split_sweep.sh tabulates to check the split plan on
// a card. Registers nothing without CUDA.

#include <benchmark/benchmark.h>

#ifdef ELI_WITH_CUDA
#include <torch/version.h>

#include <string>
#include <vector>

#include "cuda_timing.h"
#include "eli/ops.h"

namespace eli::kernel_bench {
namespace {

enum class Variant {
  kFp16,
  kInt8,
  kInt4,
  kMixed,
  kPagedFp16,
  kPagedInt4,
  kInt4G32,
  kMixedG32,
  kPagedFp16B64,
  kPagedInt4B64
};

const char* name_of(Variant v) {
  switch (v) {
    case Variant::kFp16:
      return "fp16";
    case Variant::kInt8:
      return "int8";
    case Variant::kInt4:
      return "int4";
    case Variant::kMixed:
      return "mixed";
    case Variant::kPagedFp16:
      return "paged_fp16";
    case Variant::kPagedInt4:
      return "paged_int4";
    case Variant::kInt4G32:
      return "int4_g32";
    case Variant::kMixedG32:
      return "mixed_g32";
    case Variant::kPagedFp16B64:
      return "paged_fp16_b64";
    case Variant::kPagedInt4B64:
      return "paged_int4_b64";
  }
  return "?";
}

/// Tokens per block of the paged variants: 16 (vLLM's default) and, for the _b64 variants, 64
/// (the paged caches' default, Config::block_size). The pool's blocks are dealt to the
/// sequences in a random order: a pool after much allocation and release.
int64_t block_of(Variant v) {
  return v == Variant::kPagedFp16B64 || v == Variant::kPagedInt4B64 ? 64 : 16;
}

struct Setup {
  at::Tensor q;
  ops::KvStore k, v;
  ops::DecodeAttentionArgs args;
  double bytes = 0;  // storage bytes read + q + out
};

int64_t store_bytes(const ops::KvStore& s) {
  int64_t b = s.data.numel() * s.data.element_size();
  if (s.scales.defined()) b += s.scales.numel() * 2;
  if (s.minima.defined()) b += s.minima.numel() * 2;
  return b;
}

/// group > 0: symmetric groups of that many elements (contiguous storage only).
ops::KvStore make(const at::Tensor& x, int bits, const at::Tensor& table, int64_t pool_blocks,
                  int64_t block, int group = 0) {
  const int64_t B = x.size(0), H = x.size(1), L = x.size(2), D = x.size(3);
  if (!table.defined()) {
    if (bits == 16) return ops::KvStore::fp(x);
    quant::QuantSpec spec;
    spec.bits = bits;
    spec.granularity = group > 0 ? Granularity::kGroup : Granularity::kPerTokenHead;
    if (group > 0) spec.group_size = group;
    return ops::quantize_kv(x, spec);
  }
  const auto opt = x.options();
  ops::KvStore s;
  if (bits == 16) {
    s = ops::KvStore::fp(at::empty({pool_blocks, H, block, D}, opt));
  } else {
    quant::QuantSpec spec;
    spec.bits = bits;
    spec.granularity = Granularity::kPerTokenHead;
    s = ops::KvStore::quantized(at::empty({pool_blocks, H, block, spec.code_bytes(D)},
                                          opt.dtype(bits == 8 ? at::kChar : at::kByte)),
                                at::empty({pool_blocks, H, block, 1}, opt.dtype(at::kHalf)), {},
                                spec);
  }
  (void)B;
  (void)L;
  ops::quantize_kv_out(x, s, ops::SlotMap{0, table});
  return s;
}

Setup setup(Variant v, int64_t B, int64_t L, int64_t H, int64_t D) {
  at::manual_seed(0);
  const auto opt = at::TensorOptions().device(at::kCUDA).dtype(at::kHalf);
  Setup s;
  s.q = at::randn({B, H, D}, opt);
  const at::Tensor kx = at::randn({B, H, L, D}, opt), vx = at::randn({B, H, L, D}, opt);
  const bool paged = v == Variant::kPagedFp16 || v == Variant::kPagedInt4 ||
                     v == Variant::kPagedFp16B64 || v == Variant::kPagedInt4B64;
  const int64_t block = block_of(v);
  int64_t pool = 0;
  at::Tensor table;
  if (paged) {
    const int64_t per_seq = (L + block - 1) / block;
    pool = B * per_seq;
    table = at::randperm(pool, at::TensorOptions().dtype(at::kLong))
                .view({B, per_seq})
                .to(at::kInt)
                .to(at::kCUDA);
  }
  const bool mixed = v == Variant::kMixed || v == Variant::kMixedG32;
  const int kbits = v == Variant::kInt8 || mixed ? 8
                    : v == Variant::kInt4 || v == Variant::kPagedInt4 || v == Variant::kInt4G32 ||
                            v == Variant::kPagedInt4B64
                        ? 4
                        : 16;
  const int vbits = mixed ? 4 : kbits;
  const int group = v == Variant::kInt4G32 || v == Variant::kMixedG32 ? 32 : 0;
  s.k = make(kx, kbits, table, pool, block, kbits == 4 ? group : 0);
  s.v = make(vx, vbits, table, pool, block, group);
  s.args.seq_lens = at::full({B}, L, at::TensorOptions().dtype(at::kInt).device(at::kCUDA));
  s.args.block_table = table;
  s.args.max_len = L;
  s.bytes = static_cast<double>(store_bytes(s.k) + store_bytes(s.v) + 2 * s.q.numel() * 2);
  return s;
}

/// Enough copies of the point's storage that the calls of one timed graph read device memory,
/// not the L2 cache (a B = 1 cache of 27 MB fits in the H200's 50 MB), and at least 8 calls per
/// graph.
std::vector<Setup> setups(Variant v, int64_t B, int64_t L, int64_t H, int64_t D, int& calls) {
  std::vector<Setup> s;
  s.push_back(setup(v, B, L, H, D));
  const int copies = copies_beyond_l2(s[0].bytes);
  for (int i = 1; i < copies; ++i) s.push_back(setup(v, B, L, H, D));
  calls = copies * ((8 + copies - 1) / copies);
  return s;
}

void bm_decode(::benchmark::State& state, Variant v, int64_t B, int64_t L, int64_t H, int64_t D,
               int64_t split_len = 0) {
  int calls = 0;
  std::vector<Setup> s = setups(v, B, L, H, D, calls);
  for (Setup& x : s) x.args.split_len = split_len;
  at::Tensor out = at::empty_like(s[0].q);
  const size_t n = s.size();
  time_cuda_graph(state, calls, [&](int i) {
    const Setup& x = s[size_t(i) % n];
    ops::decode_attention_out(x.q, x.k, x.v, x.args, out);
  });
  set_bytes(state, s[0].bytes);
}

void bm_sdpa(::benchmark::State& state, int64_t B, int64_t L, int64_t H, int64_t D) {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  int calls = 0;
  std::vector<Setup> s = setups(Variant::kFp16, B, L, H, D, calls);
  std::vector<at::Tensor> q, out(s.size());
  for (const Setup& x : s) q.push_back(x.q.unsqueeze(2));
  const size_t n = s.size();
  time_cuda_graph(state, calls, [&](int i) {
    const size_t j = size_t(i) % n;
    out[j] = at::scaled_dot_product_attention(q[j], s[j].k.data, s[j].v.data);
  });
  set_bytes(state, s[0].bytes);
#else
  (void)B, (void)L, (void)H, (void)D;
  state.SkipWithError("scaled_dot_product_attention needs LibTorch 2.x");
#endif
}

struct Point {
  int64_t B, L, H, D;
};

std::vector<Point> points() {
  std::vector<Point> points;
  for (int64_t B : {1, 8, 32})
    for (int64_t L : {512, 2048, 8192}) points.push_back({B, L, 12, 64});
  points.push_back({32, 4096, 12, 64});  // the capacity of the end-to-end point 32 x 3968
  points.push_back({32, 8192, 8, 128});
  points.push_back({1, 32768, 12, 64});  // one long sequence: split-KV across the SMs
  return points;
}

std::string tail_of(const Point& p) {
  return "/B" + std::to_string(p.B) + "/L" + std::to_string(p.L) + "/D" + std::to_string(p.D);
}

void reg(::benchmark::internal::Benchmark* b) {
  b->UseManualTime()->Unit(::benchmark::kMicrosecond);
}

[[maybe_unused]] const bool registered = [] {
  if (!at::hasCUDA()) return false;
  for (const Point& p : points()) {
    const std::string tail = tail_of(p);
    reg(::benchmark::RegisterBenchmark(
        ("BM_SDPA/fp16" + tail).c_str(),
        [p](::benchmark::State& st) { bm_sdpa(st, p.B, p.L, p.H, p.D); }));
    for (Variant v : {Variant::kFp16, Variant::kInt8, Variant::kInt4, Variant::kMixed,
                      Variant::kPagedFp16, Variant::kPagedInt4, Variant::kInt4G32,
                      Variant::kMixedG32, Variant::kPagedFp16B64, Variant::kPagedInt4B64}) {
      reg(::benchmark::RegisterBenchmark(
          ("BM_DecodeAttention/" + std::string(name_of(v)) + tail).c_str(),
          [p, v](::benchmark::State& st) { bm_decode(st, v, p.B, p.L, p.H, p.D); }));
    }
  }
  return true;
}();

}  // namespace

void register_split_sweep() {
  if (!at::hasCUDA()) return;
  for (const Point& p : points()) {
    for (Variant v : {Variant::kFp16, Variant::kInt8, Variant::kInt4, Variant::kPagedInt4,
                      Variant::kInt4G32, Variant::kMixedG32}) {
      for (int64_t s : {0, 64, 128, 256, 384, 512, 768, 1024}) {
        reg(::benchmark::RegisterBenchmark(
            ("BM_DecodeAttentionSplit/" + std::string(name_of(v)) + tail_of(p) + "/S" +
             std::to_string(s))
                .c_str(),
            [p, v, s](::benchmark::State& st) { bm_decode(st, v, p.B, p.L, p.H, p.D, s); }));
      }
    }
  }
}

}  // namespace eli::kernel_bench
#endif  // ELI_WITH_CUDA
