#pragma once
/// Device helpers shared by the kernels: dtype conversion, compile-time dispatch macros,
/// row addressing and branch-free decoding of INT8/INT4 codes to fp32.

#include <cuda_fp16.h>

#include <cstdint>
#include <utility>

#include "../include/eli/quant_layout.h"  // the packing (torch-free; cuda/ is not installed)
#include "eli_kernels.cuh"

namespace eli::cuda {

/// Records the message returned by last_error_message(); returns cudaErrorInvalidValue.
cudaError_t invalid_argument(const char* what, long long value);
/// Multiprocessors of the current device (132 if the query fails).
int device_sm_count();
/// Shared memory per multiprocessor of the current device in bytes (0 if the query fails).
int device_smem_per_sm();
/// Whether launch() asks for programmatic dependent launch: compute capability >= 9.0 and
/// the environment variable ELI_PDL not set to 0 (the switch exists to measure it).
bool programmatic_launch_enabled();

// Programmatic dependent launch (Hopper and later). A decode step is a chain of short kernels;
// launched normally, each starts only after the one before it has drained, and the memory sits
// idle in between. Every eli kernel is launched with launch() below and starts with
// allow_next_kernel() and wait_prior_kernels(): the next kernel of the stream may then be
// scheduled while this one runs, and does nothing that depends on earlier kernels (reads of
// their outputs, writes of anything they read) before its own wait_prior_kernels(), which
// returns once every kernel before it has completed and its writes are visible. Work that does
// not depend on earlier kernels (the projection kernel's weight loads) may go before the wait.
// On older devices both are no-ops and launch() is a plain launch.

/// Lets the next kernel in the stream be scheduled (once every block of this grid called it).
__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/// Waits until the kernels before this one in the stream have completed and flushed.
__device__ __forceinline__ void wait_prior_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// kernel<<<grid, block, smem, stream>>>(args...) with programmatic stream serialization
/// allowed (see above); the kernel must call wait_prior_kernels() before dependent work.
/// Errors are also recorded for cudaGetLastError().
template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = programmatic_launch_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace eli::cuda

#define ELI_DISPATCH_HEAD_DIM(value, kD, ...)                                   \
  switch (value) {                                                              \
    case 64: {                                                                  \
      constexpr int kD = 64;                                                    \
      __VA_ARGS__;                                                              \
    } break;                                                                    \
    case 128: {                                                                 \
      constexpr int kD = 128;                                                   \
      __VA_ARGS__;                                                              \
    } break;                                                                    \
    default:                                                                    \
      return ::eli::cuda::invalid_argument("head_dim (valid: 64, 128)", value); \
  }

#define ELI_DISPATCH_DTYPE(value, T, ...)                                             \
  switch (value) {                                                                    \
    case ::eli::cuda::DType::kHalf: {                                                 \
      using T = __half;                                                               \
      __VA_ARGS__;                                                                    \
    } break;                                                                          \
    case ::eli::cuda::DType::kFloat: {                                                \
      using T = float;                                                                \
      __VA_ARGS__;                                                                    \
    } break;                                                                          \
    default:                                                                          \
      return ::eli::cuda::invalid_argument("dtype (valid: half, float)", int(value)); \
  }

/// Quantized formats only (kInt8, kInt4).
#define ELI_DISPATCH_QFORMAT(value, kF, ...)                                                    \
  switch (value) {                                                                              \
    case ::eli::cuda::Format::kInt8: {                                                          \
      constexpr ::eli::cuda::Format kF = ::eli::cuda::Format::kInt8;                            \
      __VA_ARGS__;                                                                              \
    } break;                                                                                    \
    case ::eli::cuda::Format::kInt4: {                                                          \
      constexpr ::eli::cuda::Format kF = ::eli::cuda::Format::kInt4;                            \
      __VA_ARGS__;                                                                              \
    } break;                                                                                    \
    default:                                                                                    \
      return ::eli::cuda::invalid_argument("quantized format (valid: int8, int4)", int(value)); \
  }

/// Any storage format (kFp, kInt8, kInt4).
#define ELI_DISPATCH_FORMAT(value, kF, ...)                                                       \
  switch (value) {                                                                                \
    case ::eli::cuda::Format::kFp: {                                                              \
      constexpr ::eli::cuda::Format kF = ::eli::cuda::Format::kFp;                                \
      __VA_ARGS__;                                                                                \
    } break;                                                                                      \
    case ::eli::cuda::Format::kInt8: {                                                            \
      constexpr ::eli::cuda::Format kF = ::eli::cuda::Format::kInt8;                              \
      __VA_ARGS__;                                                                                \
    } break;                                                                                      \
    case ::eli::cuda::Format::kInt4: {                                                            \
      constexpr ::eli::cuda::Format kF = ::eli::cuda::Format::kInt4;                              \
      __VA_ARGS__;                                                                                \
    } break;                                                                                      \
    default:                                                                                      \
      return ::eli::cuda::invalid_argument("storage format (valid: fp, int8, int4)", int(value)); \
  }

namespace eli::cuda::detail {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

__device__ __forceinline__ int64_t row_of(const RowMap& m, int b, int h, int t) {
  if (m.block_table == nullptr) return (int64_t(b) * m.heads + h) * m.block_size + t;
  const int64_t block = m.block_table[b * m.table_stride + t / m.block_size];
  return (block * m.heads + h) * m.block_size + t % m.block_size;
}

/// row_of() for one (b, h), with the per-(b, h) part computed once: a contiguous row is
/// base + t; a paged row is table[t / bs] * H * bs + h * bs + t % bs, with a shift and a mask
/// when bs is a power of two (the usual case) instead of an integer division. The decode
/// attention fills its per-split slot rows (s_row) with it.
struct RowCursor {
  const int32_t* table;  // this sequence's block table row, or nullptr (contiguous)
  int64_t base;          // contiguous: (b * H + h) * capacity; paged: h * bs
  int64_t block_rows;    // paged: H * bs
  int bs;
  int shift;  // log2(bs) when bs is a power of two, else -1
  __device__ RowCursor(const RowMap& m, int b, int h) {
    bs = m.block_size;
    shift = (bs & (bs - 1)) == 0 ? __ffs(bs) - 1 : -1;
    if (m.block_table == nullptr) {
      table = nullptr;
      base = (int64_t(b) * m.heads + h) * bs;
      block_rows = 0;
    } else {
      table = m.block_table + b * m.table_stride;
      base = int64_t(h) * bs;
      block_rows = int64_t(m.heads) * bs;
    }
  }
  __device__ __forceinline__ int64_t row(int t) const {
    if (table == nullptr) return base + t;
    if (shift >= 0) return table[t >> shift] * block_rows + base + (t & (bs - 1));
    return table[t / bs] * block_rows + base + t % bs;
  }
};

/// Storage traits: bytes of one row and elements per 16-byte vector.
template <Format F, typename T>
struct Storage;
template <typename T>
struct Storage<Format::kFp, T> {
  static constexpr int kElemsPerVec = 16 / int(sizeof(T));
  static constexpr int row_bytes(int d) { return d * int(sizeof(T)); }
};
template <typename T>
struct Storage<Format::kInt8, T> {
  static constexpr int kElemsPerVec = 16;
  static constexpr int row_bytes(int d) { return d; }
};
template <typename T>
struct Storage<Format::kInt4, T> {
  static constexpr int kElemsPerVec = 32;
  static constexpr int row_bytes(int d) { return d / 2; }
};

// Bit-level names for the packing of include/eli/quant_layout.h, as the kernels read it.
/// INT4: byte j holds element 2j in its low nibble, 2j + 1 in its high nibble (PackedInt4).
constexpr uint32_t kEvenNibbles = 0x0F0F0F0Fu;  // a word's even elements, one per byte
constexpr uint32_t kOddNibbles = 0xF0F0F0F0u;   // its odd elements, one per byte, times 16
/// Symmetric INT8 codes are signed bytes; flipping the sign bit reads them as code + 128.
constexpr uint32_t kInt8SignFlip = 0x80808080u;
constexpr int kInt8SymOffset = 128;
static_assert(kInt8SymOffset == quant::kInt8SymMax + 1, "INT8 codes span -127 .. 127");
/// 2^23 as fp32: a byte OR-ed into its mantissa reads as 2^23 + byte exactly.
constexpr uint32_t kFp32Magic = 0x4B000000u;
/// 1024 as fp16 (0x6400), twice in a word, and its exponent byte in all four bytes: a value
/// v < 1024 placed in the mantissa reads as 1024 + v exactly.
constexpr uint32_t kHalf1024x2 = 0x64006400u;
constexpr uint32_t kHalf1024Bytes = 0x64646464u;

/// A code c decodes to x = scale * c + bias_per_group. decode_codes() writes c as exact fp32
/// integers (the 2^23 magic-number trick: one PRMT + one FADD per element, no I2F).
/// `flip` xors INT8 words (0x80808080 turns signed codes into offset-128 bytes) and `sub`
/// removes the magic and the offset: INT8 sym 2^23+128, INT8 asym 2^23, INT4 sym 2^23+8,
/// INT4 asym 2^23.
struct CodeDecoder {
  uint32_t flip;
  float sub;
  static __host__ __device__ CodeDecoder make(Format f, bool zero_point) {
    const float magic = 8388608.f;  // 2^23, kFp32Magic
    if (f == Format::kInt8)
      return {zero_point ? 0u : kInt8SignFlip, magic + (zero_point ? 0 : kInt8SymOffset)};
    return {0u, magic + (zero_point ? 0 : quant::kInt4Offset)};
  }
};

__device__ __forceinline__ float magic_byte(uint32_t w, uint32_t sel) {
  return __uint_as_float(__byte_perm(w, kFp32Magic, sel));
}

template <Format F, typename T>
__device__ __forceinline__ void decode_vec(const uint4& v, const CodeDecoder& dec,
                                           float (&out)[Storage<F, T>::kElemsPerVec]) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
  if constexpr (F == Format::kFp) {
    if constexpr (sizeof(T) == 2) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        __half2 h2 = *reinterpret_cast<const __half2*>(&w[i]);
        float2 f2 = __half22float2(h2);
        out[2 * i] = f2.x;
        out[2 * i + 1] = f2.y;
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(w[i]);
    }
  } else if constexpr (F == Format::kInt8) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t x = w[i] ^ dec.flip;
#pragma unroll
      for (int j = 0; j < 4; ++j) out[4 * i + j] = magic_byte(x, 0x7440u | j) - dec.sub;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t lo = w[i] & kEvenNibbles;         // even elements
      const uint32_t hi = (w[i] >> 4) & kEvenNibbles;  // odd elements
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        out[8 * i + 2 * j] = magic_byte(lo, 0x7440u | j) - dec.sub;
        out[8 * i + 2 * j + 1] = magic_byte(hi, 0x7440u | j) - dec.sub;
      }
    }
  }
}

__device__ __forceinline__ uint4 load_vec(const void* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

/// 16-byte copy global -> shared that holds no registers while in flight (cp.async, sm_80+; a
/// plain load and store before). copy16_async_wait: all of this thread's copies have landed.
__device__ __forceinline__ void copy16_async(void* smem, const void* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
#else
  *static_cast<uint4*>(smem) = *static_cast<const uint4*>(gmem);
#endif
}
__device__ __forceinline__ void copy16_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}
/// Closes this thread's group of copy16_async calls (an empty group too).
__device__ __forceinline__ void copy16_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
/// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void copy16_async_wait_pending() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

}  // namespace eli::cuda::detail
