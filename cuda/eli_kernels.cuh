#pragma once
/// Host-side API of the torch-free kernels: plain structs, raw device pointers, sizes and a
/// cudaStream_t. Every launcher returns cudaError_t; on cudaErrorInvalidValue
/// `last_error_message()` names the bad argument. Includable from plain C++ (no device code).
///
/// Storage is the layout of include/eli/quant_layout.h with the rounding rules of
/// include/eli/cache/quantize.h: codes = round-half-even(x / s) clamped; s = max(absmax/qmax,
/// eps) (or (max - m)/levels), clamped to 65504 and rounded to the next fp16 >= s; the minimum m
/// rounded to the next fp16 <= min. A token row is addressed through a
/// RowMap: contiguous caches [B, H, cap, row] or a paged pool [num_blocks, H, block_size, row]
/// with a block table [B, table_stride] int32.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace eli::cuda {

enum class DType : int { kHalf = 0, kFloat = 1 };
/// How one of K or V is stored: kFp = elements of the query's dtype, kInt8, kInt4 (packed).
enum class Format : int { kFp = 0, kInt8 = 8, kInt4 = 4 };

/// row(b, h, t) = contiguous ? (b * H + h) * block_size + t
///                           : (table[b * table_stride + t / block_size] * H + h) * block_size
///                             + t % block_size
/// Decode attention keeps rows as 32-bit indices: a store must have fewer than 2^32 rows.
struct RowMap {
  const int32_t* block_table = nullptr;  // [B, table_stride] int32, or nullptr = contiguous
  int64_t table_stride = 0;
  int block_size = 0;  // paged: tokens per block; contiguous: capacity per (b, h)
  int heads = 0;       // H
};

/// One quantized (or fp) K or V store, read-only.
struct QuantView {
  Format format = Format::kFp;
  const void* data = nullptr;    // fp: [rows, D] T; INT8: [rows, D] int8/uint8; INT4 [rows, D/2]
  const void* scales = nullptr;  // fp16 [rows, D / group]; nullptr for fp or per-tensor
  const void* minima = nullptr;  // fp16 like scales for zero-point storage, else nullptr
  float tensor_scale = 0.f;      // > 0: per-tensor scale (host value); scales/minima unused
  int group = 0;                 // elements per scale along D: 32, 64 or D (per token-head)
};

/// Destination of quantize: same fields, writable.
struct QuantTarget {
  Format format = Format::kInt8;
  void* data = nullptr;      // codes (kFp: rows of dtype values)
  void* scales = nullptr;    // written (nullptr for per-tensor)
  void* minima = nullptr;    // written for zero-point, else nullptr
  float tensor_scale = 0.f;  // > 0: per-tensor scale; scales/minima not written
  int group = 0;             // 32, 64 or D; ignored for per-tensor
  float eps = 1e-8f;         // scales below eps are raised to eps
};

/// The message for the last cudaErrorInvalidValue returned by a launcher on this thread.
const char* last_error_message();

/// x [B, H, T, D] (dtype) -> rows (b, h, t0 + t) of `dst` through `map`. D in {64, 128}.
/// t0_dev, if not null: int32 [B] in device memory, sequence b's first slot (replaces t0; read
/// at run time, so a captured CUDA graph writes where the step's state says). dst.format kFp
/// stores the values as they are (dst.data has x's dtype).
cudaError_t launch_quantize(DType dtype, const void* x, int B, int H, int T, int D,
                            const QuantTarget& dst, const RowMap& map, int t0,
                            const int32_t* t0_dev, cudaStream_t stream);
/// launch_quantize of two inputs into two targets of the same kind (format, per-tensor or not,
/// zero-point, group) at the same slots in one launch: K and V of a decode step. x2 == nullptr:
/// x into dst only.
cudaError_t launch_quantize2(DType dtype, const void* x, const void* x2, int B, int H, int T, int D,
                             const QuantTarget& dst, const QuantTarget& dst2, const RowMap& map,
                             int t0, const int32_t* t0_dev, cudaStream_t stream);

/// rows (b, h, t0 + t) of `src` through `map` -> out [B, H, T, D] (dtype). D in {64, 128}.
cudaError_t launch_dequantize(DType dtype, const QuantView& src, const RowMap& map, int t0, int B,
                              int H, int T, int D, void* out, cudaStream_t stream);

/// Fused decode attention: one query per sequence against the cache as stored.
struct DecodeAttentionParams {
  DType dtype = DType::kHalf;
  const void* q = nullptr;            // [B, H, D] dtype
  void* out = nullptr;                // [B, H, D] dtype
  float* lse = nullptr;               // optional [B, H] fp32 natural-log sum-exp of the logits
  QuantView k, v;                     // K and V storage (kFp means dtype elements)
  RowMap map;                         // shared by K and V
  const int32_t* seq_lens = nullptr;  // [B] int32, tokens stored per sequence (<= max_len)
  const float* bias = nullptr;        // optional [B, bias_stride] fp32 added to logit of slot t
  int64_t bias_stride = 0;
  int B = 0, H = 0, D = 0;  // D in {64, 128}
  int max_len = 0;          // upper bound of seq_lens (sizes the grid)
  /// Tokens the split length is planned for (0 = max_len). The result depends on the split
  /// length, not on max_len: calls with one plan_len agree bit for bit whatever their max_len
  /// (a CUDA graph launches for the capacity, the eager step for the current length).
  int plan_len = 0;
  /// Tokens per split in place of the planned length (0 = planned): a multiple of 64 in
  /// 64 .. 1024. For tuning and the split sweep of bench_kernels.
  int split_len = 0;
  float sm_scale = 0.f;  // logit = sm_scale * q.k + bias
  /// Optional [B, H, D]: the step's new key and value, attended at full precision as one more
  /// slot after the stored ones (nullptr = none); fp32 when new_f32 (a rotated key), else dtype.
  const void* k_new = nullptr;
  const void* v_new = nullptr;
  bool new_f32 = false;
  /// Optional, with k_new (in dtype, not new_f32): the K and V storage (addressed through
  /// `map`) that k_new / v_new are also written to, at slot store_t0[b] (int32 [B], device) of
  /// sequence b, after the history was read: the append of a cache in the same launch. A kFp
  /// target (data: dtype rows) takes the values as they are; INT8 / INT4 targets quantize them
  /// as launch_quantize does (the same bits). store_k.data == nullptr: no append.
  QuantTarget store_k, store_v;
  const int32_t* store_t0 = nullptr;
};

/// y [m, n] = x [m, k] w^T (+ bias [n]) (then gelu_tanh), w [n, k] row-major, m <= kGemvMaxRows
/// (cuda/gemv.cu): a decode step's projections, W read once. k a multiple of 16 bytes of dtype;
/// x, w 16-byte aligned. fp32 sums, bias and GELU in fp32 (as cuBLASLt's bias + GELU epilogue, so a
/// prompt's products agree whichever runs them), one rounding to dtype.
/// fp16 products of 9 .. kGemvMaxRowsHalf rows (k a multiple of 32) run on the tensor cores
/// (gemm_rows_mma_kernel), same contract. parts > 1 (dividing n): y is laid out
/// [parts, m, n / parts] instead, the columns cut into parts (a QKV projection of one token a
/// row straight into q, k and v of [m, heads, head_dim] each); the values are the same.
constexpr int kGemvMaxRows = 8;
constexpr int kGemvMaxRowsHalf = 32;
cudaError_t launch_gemv(DType dtype, const void* x, const void* w, const void* bias, void* y, int m,
                        int n, int k, bool gelu, int parts, cudaStream_t stream);

/// GPT-2 block stages (cuda/layer_fused.cu), rows of n contiguous dtype elements, fp32
/// arithmetic. x [rows, n] += y + bias (y: a GEMM's output without its bias; the sum rounded to
/// dtype first, as the GEMM's own bias epilogue would), then out [rows, n] =
/// LayerNorm(x) * ln_w + ln_b with `eps`. n <= 12288.
cudaError_t launch_bias_residual_layernorm(DType dtype, void* x, const void* y, const void* bias,
                                           const void* ln_w, const void* ln_b, void* out, int rows,
                                           int n, float eps, cudaStream_t stream);
/// The embedding of GPT-2 and the first LayerNorm: rows = B * t_len tokens, ids [rows] int64,
/// pos0 int64 (device), one (pos_stride 0) or one per sequence (pos_stride 1): x[r] = wte[ids[r]]
/// + wpe[min(pos0[(r / t_len) * pos_stride] + r % t_len, n_pos - 1)] (rounded to dtype once),
/// out[r] = LayerNorm(x[r]) * ln_w + ln_b. Indices are not checked (the caller's job).
cudaError_t launch_embed_layernorm(DType dtype, const void* wte, const void* wpe,
                                   const int64_t* ids, const int64_t* pos0, int pos_stride,
                                   int n_pos, int rows, int t_len, const void* ln_w,
                                   const void* ln_b, void* x, void* out, int n, float eps,
                                   cudaStream_t stream);
/// q, k, v [B, H, T, D] (each contiguous) = the three parts of a QKV projection's output
/// qkv [B, T, 3, H, D]: the head split of attention in one launch instead of three copies.
/// D * sizeof(dtype) a multiple of 16 bytes, pointers 16-byte aligned.
cudaError_t launch_split_heads(DType dtype, const void* qkv, void* q, void* k, void* v, int batch,
                               int t_len, int heads, int head_dim, cudaStream_t stream);
/// o, lse = merge of two attentions over disjoint key sets (ops::merge_attention): o1, o2, o
/// [rows, D] in dtype, lse1, lse2, lse [rows] fp32 (-inf: no keys). o and lse must not alias the
/// inputs.
cudaError_t launch_merge_attention(DType dtype, const void* o1, const float* lse1, const void* o2,
                                   const float* lse2, void* o, float* lse, int64_t rows, int D,
                                   cudaStream_t stream);
/// out[r] = index of the largest of x [rows, n] row r (NaN largest, ties: the lowest index).
/// Long rows are cut into parts over more blocks, merged by a second launch through
/// `workspace` (argmax_workspace_bytes; 0: none needed).
size_t argmax_workspace_bytes(int rows, int n);
cudaError_t launch_argmax_rows(DType dtype, const void* x, int rows, int n, int64_t* out,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream);

/// Bytes of scratch that launch_decode_attention needs for these parameters.
size_t decode_attention_workspace_bytes(const DecodeAttentionParams& p);
cudaError_t launch_decode_attention(const DecodeAttentionParams& p, void* workspace,
                                    size_t workspace_bytes, cudaStream_t stream);

}  // namespace eli::cuda
