#pragma once
// Helpers shared by the op tests (CPU: tests/test_ops_ref.cpp, GPU: tests/gpu/test_*.cpp).

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "eli/ops.h"

namespace eli::ops::testing {

inline bool gpu_available() { return at::hasCUDA() && has_cuda_ops(); }
/// ELI_GPU_TEST_QUICK=1 keeps only the small shapes (compute-sanitizer runs).
inline bool quick() { return std::getenv("ELI_GPU_TEST_QUICK") != nullptr; }

#define ELI_REQUIRE_GPU() \
  if (!::eli::ops::testing::gpu_available()) GTEST_SKIP() << "no CUDA device or CUDA ops"

/// Rows with very different magnitudes (so per-row/group scales matter), never all zero.
inline at::Tensor random_rows(std::vector<int64_t> shape, at::ScalarType dtype,
                              at::Device device = at::kCPU) {
  std::vector<int64_t> row_shape = shape;
  row_shape.back() = 1;
  at::Tensor x = at::randn(shape, at::kFloat) * at::exp(at::randn(row_shape, at::kFloat)) +
                 0.3 * at::randn(row_shape, at::kFloat);
  return x.to(dtype).to(device);
}

/// Checks |a - b| <= atol + rtol * |b| everywhere (fp64), reporting the worst element.
inline ::testing::AssertionResult all_close(const at::Tensor& a, const at::Tensor& b, double atol,
                                            double rtol) {
  if (a.sizes() != b.sizes()) return ::testing::AssertionFailure() << "shape mismatch";
  const at::Tensor x = a.to(at::kCPU).to(at::kDouble).flatten();
  const at::Tensor y = b.to(at::kCPU).to(at::kDouble).flatten();
  if (x.numel() == 0) return ::testing::AssertionSuccess();
  // NaN in both = a poisoned slot that neither side was meant to write (storage tests).
  const at::Tensor same = (x == y).logical_or(x.isnan().logical_and(y.isnan()));
  const at::Tensor excess =
      at::where(same, at::full_like(x, -1.0), (x - y).abs() - (atol + rtol * y.abs()));
  const at::Tensor bad = excess.isnan().logical_or(x.isnan() != y.isnan());
  const at::Tensor score = at::where(bad, at::full_like(excess, INFINITY), excess);
  const int64_t i = score.argmax().item<int64_t>();
  const double worst = score[i].item<double>();
  if (worst <= 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "worst element flat[" << i << "]: got " << x[i].item<double>() << ", want "
         << y[i].item<double>() << " (|diff| "
         << std::abs(x[i].item<double>() - y[i].item<double>()) << " > atol " << atol << " + rtol "
         << rtol << " * |want|); " << (bad.sum().item<int64_t>()) << " NaN mismatches";
}

/// A shuffled block table [B, max_blocks] over `num_blocks` pool blocks (no block shared).
inline at::Tensor shuffled_table(int64_t B, int64_t max_blocks, int64_t num_blocks) {
  const at::Tensor perm = at::randperm(num_blocks, at::TensorOptions().dtype(at::kLong));
  return perm.narrow(0, 0, B * max_blocks).view({B, max_blocks}).to(at::kInt).contiguous();
}

struct StoreKind {
  int bits;  // 16, 8, 4
  Granularity granularity;
  int group_size;
  bool zero_point;
  std::string name() const {
    if (bits == 16) return "fp";
    std::string n = "int" + std::to_string(bits) + "_";
    n += granularity == Granularity::kPerTensor
             ? "tensor"
             : (granularity == Granularity::kPerTokenHead ? "tokhead"
                                                          : "g" + std::to_string(group_size));
    return n + (zero_point ? "_zp" : "");
  }
  quant::QuantSpec spec() const {
    quant::QuantSpec s;
    s.bits = bits == 16 ? 8 : bits;
    s.granularity = granularity;
    s.group_size = group_size;
    s.zero_point = zero_point;
    return s;
  }
};

/// Every quantized storage kind the kernels accept.
inline std::vector<StoreKind> quant_kinds() {
  std::vector<StoreKind> out;
  for (int bits : {8, 4}) {
    out.push_back({bits, Granularity::kPerTensor, 32, false});
    for (bool zp : {false, true}) {
      out.push_back({bits, Granularity::kPerTokenHead, 32, zp});
      out.push_back({bits, Granularity::kGroup, 32, zp});
      out.push_back({bits, Granularity::kGroup, 64, zp});
    }
  }
  return out;
}

/// Empty storage of `kind` for [N0, H, S, D] (data poisoned with a pattern, scales with NaN).
inline KvStore make_store(const StoreKind& kind, int64_t N0, int64_t H, int64_t S, int64_t D,
                          at::ScalarType fp_dtype, at::Device device, float tensor_scale) {
  const auto opt = at::TensorOptions().device(device);
  if (kind.bits == 16) return KvStore::fp(at::full({N0, H, S, D}, NAN, opt.dtype(fp_dtype)));
  const quant::QuantSpec spec = kind.spec();
  const at::ScalarType code_t = (kind.bits == 8 && !kind.zero_point) ? at::kChar : at::kByte;
  at::Tensor codes = at::full({N0, H, S, spec.code_bytes(D)}, 0x5A, opt.dtype(code_t));
  at::Tensor scales, minima;
  const int64_t g = spec.groups(D);
  if (g > 0) scales = at::full({N0, H, S, g}, NAN, opt.dtype(at::kHalf));
  if (kind.zero_point) minima = at::full({N0, H, S, g}, NAN, opt.dtype(at::kHalf));
  return KvStore::quantized(codes, scales, minima, spec, tensor_scale);
}

/// Per-tensor scale that covers x without clamping.
inline float covering_scale(const at::Tensor& x, int bits) {
  return x.abs().max().item<float>() / (bits == 8 ? 127.f : 7.f);
}

/// Copy of a store on another device.
inline KvStore store_to(const KvStore& s, at::Device device) {
  KvStore o = s;
  o.data = s.data.to(device);
  if (s.scales.defined()) o.scales = s.scales.to(device);
  if (s.minima.defined()) o.minima = s.minima.to(device);
  return o;
}

}  // namespace eli::ops::testing
