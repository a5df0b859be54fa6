// Launchers for quantize / dequantize: argument checks, grid math, compile-time dispatch.
#include <algorithm>

#include "quant.cuh"

namespace eli::cuda {

namespace {
bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
}  // namespace

namespace {

/// One task (x, dst) or two (x2 != nullptr: x2, dst2 as grid row 1) in one launch.
template <typename Elem, int kD, Format F, int kGroup, bool kZp>
cudaError_t run_quantize(const void* x, const void* x2, int B, int H, int T, const QuantTarget& dst,
                         const QuantTarget& dst2, const RowMap& map, int t0, const int32_t* t0_dev,
                         cudaStream_t stream) {
  constexpr int kWarps = 8;
  const int64_t rows = int64_t(B) * H * T;
  const int64_t blocks = (rows + kWarps - 1) / kWarps;
  return launch(detail::quantize_kernel<Elem, kD, F, kGroup, kZp>,
                dim3(unsigned(blocks), x2 != nullptr ? 2u : 1u), dim3(kWarps * 32), 0, stream,
                static_cast<const Elem*>(x), static_cast<const Elem*>(x2), B, H, T, t0, t0_dev, map,
                dst, dst2);
}

template <typename Elem, int kD>
cudaError_t run_store(const void* x, const void* x2, int B, int H, int T, void* dst, void* dst2,
                      const RowMap& map, int t0, const int32_t* t0_dev, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t n = int64_t(B) * H * T * (kD * int(sizeof(Elem)) / 16);
  return launch(detail::store_rows_kernel<Elem, kD>,
                dim3(unsigned((n + kThreads - 1) / kThreads), x2 != nullptr ? 2u : 1u),
                dim3(kThreads), 0, stream, static_cast<const Elem*>(x),
                static_cast<const Elem*>(x2), B, H, T, t0, t0_dev, map, static_cast<Elem*>(dst),
                static_cast<Elem*>(dst2));
}

}  // namespace

namespace {
/// The compile-time kind of a quantize target: format, scale storage, group (the kernel it needs).
bool same_kind(const QuantTarget& a, const QuantTarget& b) {
  return a.format == b.format && (a.tensor_scale > 0.f) == (b.tensor_scale > 0.f) &&
         (a.minima != nullptr) == (b.minima != nullptr) &&
         (a.tensor_scale > 0.f || a.format == Format::kFp || a.group == b.group);
}
}  // namespace

cudaError_t launch_quantize(DType dtype, const void* x, int B, int H, int T, int D,
                            const QuantTarget& dst, const RowMap& map, int t0,
                            const int32_t* t0_dev, cudaStream_t stream) {
  return launch_quantize2(dtype, x, nullptr, B, H, T, D, dst, dst, map, t0, t0_dev, stream);
}

cudaError_t launch_quantize2(DType dtype, const void* x, const void* x2, int B, int H, int T, int D,
                             const QuantTarget& dst, const QuantTarget& dst2, const RowMap& map,
                             int t0, const int32_t* t0_dev, cudaStream_t stream) {
  if (B <= 0 || H <= 0 || T < 0)
    return invalid_argument("quantize rows (B*H*T)", int64_t(B) * H * T);
  if (T == 0) return cudaSuccess;
  if (t0 < 0) return invalid_argument("quantize t0", t0);
  if (dst.data == nullptr || (x2 != nullptr && dst2.data == nullptr))
    return invalid_argument("quantize destination pointer", 0);
  if (x2 != nullptr && !same_kind(dst, dst2))
    return invalid_argument("quantize pair (the two targets differ in format or scales)", 0);
  if (dst.format == Format::kFp) {
    if (!aligned16(x) || !aligned16(dst.data) ||
        (x2 != nullptr && (!aligned16(x2) || !aligned16(dst2.data))))
      return invalid_argument("store rows: x / destination not 16-byte aligned", 0);
    ELI_DISPATCH_DTYPE(dtype, T_, ELI_DISPATCH_HEAD_DIM(D, kD, {
                         return run_store<T_, kD>(x, x2, B, H, T, dst.data, dst2.data, map, t0,
                                                  t0_dev, stream);
                       }));
    return cudaSuccess;
  }
  const bool per_tensor = dst.tensor_scale > 0.f;
  const bool zp = dst.minima != nullptr;
  if (!per_tensor && (dst.scales == nullptr || (x2 != nullptr && dst2.scales == nullptr)))
    return invalid_argument("quantize scales pointer", 0);
  if (per_tensor && zp) return invalid_argument("per-tensor zero-point (unsupported)", 1);
  const int group = per_tensor ? 0 : (dst.group == D ? -1 : dst.group);
  ELI_DISPATCH_DTYPE(dtype, T_,
                     ELI_DISPATCH_HEAD_DIM(
                         D, kD, ELI_DISPATCH_QFORMAT(dst.format, kF, {
                           switch (group) {
                             case 0:
                               return run_quantize<T_, kD, kF, 0, false>(x, x2, B, H, T, dst, dst2,
                                                                         map, t0, t0_dev, stream);
                             case -1:
                               return zp ? run_quantize<T_, kD, kF, kD, true>(
                                               x, x2, B, H, T, dst, dst2, map, t0, t0_dev, stream)
                                         : run_quantize<T_, kD, kF, kD, false>(
                                               x, x2, B, H, T, dst, dst2, map, t0, t0_dev, stream);
                             case 32:
                               return zp ? run_quantize<T_, kD, kF, 32, true>(
                                               x, x2, B, H, T, dst, dst2, map, t0, t0_dev, stream)
                                         : run_quantize<T_, kD, kF, 32, false>(
                                               x, x2, B, H, T, dst, dst2, map, t0, t0_dev, stream);
                             case 64:
                               return zp ? run_quantize<T_, kD, kF, 64, true>(
                                               x, x2, B, H, T, dst, dst2, map, t0, t0_dev, stream)
                                         : run_quantize<T_, kD, kF, 64, false>(
                                               x, x2, B, H, T, dst, dst2, map, t0, t0_dev, stream);
                             default:
                               return invalid_argument("quantize group (valid: 32, 64, head_dim)",
                                                       dst.group);
                           }
                         })));
  return cudaSuccess;
}

namespace {

template <typename Elem, int kD, Format F>
cudaError_t run_dequantize(const QuantView& src, const RowMap& map, int t0, int B, int H, int T,
                           void* out, cudaStream_t stream) {
  constexpr int kUnitsPerRow = kD / (16 / int(sizeof(Elem)));
  constexpr int64_t kTile = int64_t(detail::kDequantThreads) * detail::kDequantUnroll;
  const int64_t rows = int64_t(B) * H * T;
  const bool direct = map.block_table == nullptr && t0 == 0 && T == map.block_size;
  // One tile per block: the hardware hands tiles to SMs as they free up (no persistent-grid
  // tail when fewer blocks than launched fit at once).
  const int64_t want = (rows * kUnitsPerRow + kTile - 1) / kTile;
  const int64_t blocks = std::min<int64_t>(want, 0x7fffffff);
  int shift = 0;
  while ((1 << shift) < src.group) ++shift;  // group is 32, 64 or D (powers of two)
  return launch(detail::dequantize_kernel<Elem, kD, F>, dim3(unsigned(blocks)),
                dim3(detail::kDequantThreads), 0, stream, src, map, H, T, t0, rows, direct, shift,
                static_cast<Elem*>(out));
}

}  // namespace

cudaError_t launch_dequantize(DType dtype, const QuantView& src, const RowMap& map, int t0, int B,
                              int H, int T, int D, void* out, cudaStream_t stream) {
  if (B <= 0 || H <= 0 || T < 0)
    return invalid_argument("dequantize rows (B*H*T)", int64_t(B) * H * T);
  if (T == 0) return cudaSuccess;
  if (t0 < 0) return invalid_argument("dequantize t0", t0);
  if (src.data == nullptr || !aligned16(src.data))
    return invalid_argument("dequantize codes pointer (16-byte aligned)", 0);
  if (!aligned16(out)) return invalid_argument("dequantize output pointer (16-byte aligned)", 0);
  if (src.tensor_scale <= 0.f) {
    if (src.scales == nullptr) return invalid_argument("dequantize scales pointer", 0);
    if (src.group != 32 && src.group != 64 && src.group != D)
      return invalid_argument("dequantize group (valid: 32, 64, head_dim)", src.group);
  }
  QuantView s = src;
  if (s.tensor_scale > 0.f) s.group = D;
  ELI_DISPATCH_DTYPE(dtype, T_, ELI_DISPATCH_HEAD_DIM(D, kD, ELI_DISPATCH_QFORMAT(src.format, kF, {
                                                        return run_dequantize<T_, kD, kF>(
                                                            s, map, t0, B, H, T, out, stream);
                                                      })));
  return cudaSuccess;
}

}  // namespace eli::cuda
