// Dequantize bandwidth (bytes read + written) from 1M to 256M elements, next to a device copy
// of the same traffic measured in the same run. Registers nothing without CUDA.

#include <benchmark/benchmark.h>

#ifdef ELI_WITH_CUDA
#include <string>

#include "cuda_timing.h"
#include "eli/ops.h"

namespace eli::kernel_bench {
namespace {

constexpr int64_t kD = 128;

int64_t elements(int64_t mega) { return mega << 20; }

void bm_dequant(::benchmark::State& state, int bits, at::ScalarType out_t) {
  const int64_t n = elements(state.range(0)), rows = n / kD;
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  quant::QuantSpec spec;
  spec.bits = bits;
  spec.granularity = Granularity::kPerTokenHead;
  const ops::KvStore s = ops::quantize_kv(at::randn({1, 1, rows, kD}, cuda.dtype(at::kHalf)), spec);
  at::Tensor out = at::empty({1, 1, rows, kD}, cuda.dtype(out_t));
  time_cuda(state, [&] { ops::dequantize_kv_out(s, ops::SlotMap{}, out); });
  const double bytes = static_cast<double>(s.data.numel() * s.data.element_size() +
                                           s.scales.numel() * 2 + out.numel() * out.element_size());
  set_bytes(state, bytes);
}

// Copies as many bytes as INT8 -> fp16 dequantize moves (1 + 2 bytes per element, halved
// because a copy reads and writes each byte).
void bm_copy(::benchmark::State& state) {
  const int64_t n = elements(state.range(0));
  const int64_t bytes = n * 3 / 2;
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kByte);
  const at::Tensor src = at::empty({bytes}, cuda).fill_(7);
  at::Tensor dst = at::empty({bytes}, cuda);
  time_cuda(state, [&] { dst.copy_(src); });
  set_bytes(state, 2.0 * static_cast<double>(bytes));
}

[[maybe_unused]] const bool registered = [] {
  if (!at::hasCUDA()) return false;
  auto sizes = [](::benchmark::internal::Benchmark* b) {
    for (int64_t m : {1, 4, 16, 64, 256}) b->Arg(m);
    b->UseManualTime()->Unit(::benchmark::kMicrosecond);
  };
  sizes(::benchmark::RegisterBenchmark("BM_Copy/Mi", bm_copy));
  sizes(::benchmark::RegisterBenchmark("BM_Dequant/int8_fp16/Mi",
                                       [](::benchmark::State& s) { bm_dequant(s, 8, at::kHalf); }));
  sizes(::benchmark::RegisterBenchmark("BM_Dequant/int4_fp16/Mi",
                                       [](::benchmark::State& s) { bm_dequant(s, 4, at::kHalf); }));
  sizes(::benchmark::RegisterBenchmark(
      "BM_Dequant/int8_fp32/Mi", [](::benchmark::State& s) { bm_dequant(s, 8, at::kFloat); }));
  sizes(::benchmark::RegisterBenchmark(
      "BM_Dequant/int4_fp32/Mi", [](::benchmark::State& s) { bm_dequant(s, 4, at::kFloat); }));
  return true;
}();

}  // namespace
}  // namespace eli::kernel_bench
#endif  // ELI_WITH_CUDA
