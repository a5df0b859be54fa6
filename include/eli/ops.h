#pragma once
/// Tensor ops over KV storage: quantize / dequantize (INT8, packed INT4, fp passthrough) and
/// fused decode attention that reads the storage as stored (see docs/KERNELS.md).
///
/// Every op runs on CUDA tensors through the kernels in cuda/ (head_dim 64 or 128, fp16/fp32)
/// and on CPU tensors through the CPU kernels; each has a plain reference, its specification
/// (src/ops/ref.h, used by the tests).
/// Storage: eli/quant.h (KvStore) and eli/quant_layout.h; rounding rules: eli/cache/quantize.h.
///
/// Storage shapes (N0 >= B sequences, H heads, S slots, D head_dim, G scales per row):
///   contiguous: [N0, H, S, w], token t of sequence b in slot t (S = capacity)
///   paged:      pool [num_blocks, H, S = block_size, w] + block_table [B, max_blocks] int32;
///               token t of sequence b in slot t % S of block block_table[b][t / S]
/// w = D (fp, INT8) or D / 2 (INT4). All storage tensors contiguous.

#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>
#include <utility>

#include "eli/quant.h"

namespace eli::ops {

/// One of K or V as a cache stores it (the one storage struct, eli/quant.h).
using quant::KvStore;

/// Which slots a [B, H, T, D] block of rows occupies: positions t0 .. t0 + T - 1 of every
/// sequence, contiguous (block_table undefined) or through a paged block table
/// ([B, max_blocks] int32 on the storage's device).
struct SlotMap {
  int64_t t0 = 0;
  at::Tensor block_table{};
  /// CUDA only, optional: int32 [B] on the storage's device, sequence b's first position
  /// (replaces t0, read when the kernel runs: a captured CUDA graph writes where the step's
  /// state says). The caller guarantees t0_dev[b] + T <= capacity; it is not checked.
  at::Tensor t0_dev{};
};

/// Quantizes x [B, H, T, D] (fp16/fp32) into dst's preallocated tensors at `slots`.
/// bits 16 copies the values (converted to data's dtype). per_tensor uses dst.tensor_scale.
void quantize_kv_out(const at::Tensor& x, const KvStore& dst, const SlotMap& slots);
/// quantize_kv_out of K and V at the same slots; on CUDA one launch when the two stores are of
/// one kind (format, scale granularity, zero-point, group: quant_int8's, quant_int4's), two
/// otherwise. Both are checked before either is written.
void quantize_kv_pair_out(const at::Tensor& xk, const KvStore& dk, const at::Tensor& xv,
                          const KvStore& dv, const SlotMap& slots);
/// Fresh contiguous storage [B, H, T, ..] for x [B, H, T, D].
KvStore quantize_kv(const at::Tensor& x, const quant::QuantSpec& spec, float tensor_scale = 0.f);

/// Reads positions slots.t0 .. + T - 1 back as values: out [B, H, T, D] fp16/fp32 (T from out).
void dequantize_kv_out(const KvStore& src, const SlotMap& slots, at::Tensor& out);
/// As dequantize_kv_out into a new [B, H, T, D] tensor of `dtype` (B: the block table's rows when
/// paged, else src.data.size(0)).
at::Tensor dequantize_kv(const KvStore& src, const SlotMap& slots, int64_t T, at::ScalarType dtype);

struct DecodeAttentionArgs {
  at::Tensor seq_lens;     // [B] int32 on q's device: tokens stored per sequence
  at::Tensor block_table;  // paged: [B, max_blocks] int32; undefined = contiguous storage
  at::Tensor bias;         // optional [B, >= max_len] fp32 added to slot t's logit (log count)
  double sm_scale = 0.0;   // logit scale; 0 -> 1 / sqrt(D)
  int64_t max_len = -1;    // bound on seq_lens (sizes the split grid); -1 -> storage capacity
  /// Sequence length the CUDA kernel's split length is planned for; -1 -> storage capacity.
  /// Results depend on it (summation order), not on max_len: two calls with equal plan_len
  /// agree bit for bit, so a graph launched for the capacity matches the eager step.
  int64_t plan_len = -1;
  /// CUDA: tokens per split of the fused kernel, a multiple of 64 in 64 .. 1024, in place of
  /// the planned length (docs/KERNELS.md); 0 -> planned from plan_len. For tuning (and the
  /// split sweep of bench_kernels); results depend on it as on plan_len. The CPU kernel has no
  /// splits and ignores it (a bad value is an error on every device).
  int64_t split_len = 0;
};

/// One query per sequence against K/V storage: q [B, H, D] or [B, H, 1, D] (fp16/fp32; fp K/V
/// storage must have q's dtype). out = softmax(sm_scale * q.K^T + bias) V over slots
/// 0 .. seq_lens[b] - 1; fp32 accumulation; a sequence of length 0 gives zeros.
at::Tensor decode_attention(const at::Tensor& q, const KvStore& k, const KvStore& v,
                            const DecodeAttentionArgs& args);
/// As decode_attention into out (q's shape and dtype); lse, if given, receives [B, H] fp32
/// log-sum-exp of the logits (-inf for empty sequences), for merge_attention.
void decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                          const DecodeAttentionArgs& args, at::Tensor& out,
                          at::Tensor* lse = nullptr);

/// Combines attention over two disjoint key sets (e.g. quantized history + fp16 residual):
/// o1, o2 [B, H, (1,) D], lse1, lse2 [B, H] fp32 -> (o [like o1], lse [B, H]). One launch on
/// CUDA (contiguous fp16/fp32 operands), the ATen sequence of ops::ref otherwise.
std::pair<at::Tensor, at::Tensor> merge_attention(const at::Tensor& o1, const at::Tensor& lse1,
                                                  const at::Tensor& o2, const at::Tensor& lse2);

/// Decode step as a cache sees it: one query per sequence against the stored history
/// (decode_attention over k, v, args) plus the latest token k_new, v_new [B, H, 1, D] at full
/// precision, merged exactly (see merge_attention). q [B, H, 1, D] -> [B, H, 1, D] in q's dtype.
/// lse, if given, receives the [B, H] fp32 log-sum-exp over history and new token together.
/// append, if given (CUDA only): k_new / v_new are also stored into k / v at slots
/// append->t0_dev (through args.block_table when paged), in the same launch, after the history
/// was read: a cache's append without launches of its own. Quantized stores (k_new / v_new in
/// q's dtype) get the codes and scales quantize_kv_out would write, bit for bit; k and v are
/// both unquantized or both quantized.
at::Tensor decode_attention_with_new(const at::Tensor& q, const KvStore& k, const KvStore& v,
                                     const DecodeAttentionArgs& args, const at::Tensor& k_new,
                                     const at::Tensor& v_new, at::Tensor* lse = nullptr,
                                     const SlotMap* append = nullptr);

/// y = x w^T (+ bias) (then gelu_tanh): x [..., K], w [N, K], bias [N] or undefined ->
/// [..., N] in x's dtype. On CUDA, products of a decode step read w once in one kernel
/// (cuda/gemv.cu): at most 8 rows of any shape, or 9 .. 32 fp16 rows of one token each (x [rows,
/// K] or [B, 1, K], K a multiple of 32) on the tensor cores. Everything else is cuBLAS: at::linear,
/// with GELU as cuBLASLt's bias + GELU epilogue (at::_addmm_activation) where it applies, else
/// at::gelu after. Prompts of 9 .. 32 tokens stay on cuBLAS so that a prompt's prefill runs the
/// same product alone and inside a ragged batch (the kernels add in different orders; a quantized
/// cache can turn that last-bit difference into another token).
/// Weights are parameters: on Hopper the kernel starts loading w (and, up to 8 rows, bias)
/// while the kernel before it in the stream is still finishing (programmatic dependent launch,
/// cuda/common.cuh), so w and bias must not be written by the kernel launched immediately before
/// this call on the same stream (model weights never are; after writing them with a kernel,
/// synchronize or launch anything else first, or set ELI_PDL=0). x is read only after that
/// kernel has completed. The same holds for bias_residual_layernorm's bias, ln_w and ln_b.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                  bool gelu = false);

/// GPT-2 block stages, one fused kernel each on CUDA (fp16/fp32; ATen elsewhere).
/// x, y [..., n] contiguous, same shape and dtype; bias, ln_w, ln_b [n].
/// x += y + bias (in place: the residual stream), then returns LayerNorm(x) * ln_w + ln_b.
at::Tensor bias_residual_layernorm(at::Tensor& x, const at::Tensor& y, const at::Tensor& bias,
                                   const at::Tensor& ln_w, const at::Tensor& ln_b, double eps);
/// GPT-2's embedding and first LayerNorm: wte [V, n], wpe [P, n], ids [B, T] int64 and pos0 [1]
/// or [B] int64 (the first position, of every row or of each) on wte's device. Returns
/// {x = wte[ids] + wpe[min(pos0[b] + t, P - 1)] [B, T, n], LayerNorm(x) * ln_w + ln_b} (the
/// clamp serves right padding past the last position). Indices are not validated (nothing is
/// read back to the host).
std::pair<at::Tensor, at::Tensor> embed_layernorm(const at::Tensor& wte, const at::Tensor& wpe,
                                                  const at::Tensor& ids, const at::Tensor& pos0,
                                                  const at::Tensor& ln_w, const at::Tensor& ln_b,
                                                  double eps);
/// The heads of a QKV projection: qkv [B, T, 3 * H * D] (q, k, v parts in that order, each
/// H heads of D) -> {q, k, v}, each [B, H, T, D] contiguous. On CUDA one launch (fp16/fp32, D a
/// multiple of 16 bytes); elsewhere ATen's views and copies.
std::tuple<at::Tensor, at::Tensor, at::Tensor> split_heads(const at::Tensor& qkv, int64_t heads);
/// A block's QKV projection split into heads: split_heads(linear(x, w, bias), heads) for x
/// [B, T, K] and w [3 * heads * D, K], so {q, k, v} each [B, heads, T, D] contiguous. One token a
/// row (T = 1) where linear's decode kernel applies: one launch, the product stored straight
/// into the three tensors (the same values; no split_heads launch). q, k and v then share one
/// allocation.
std::tuple<at::Tensor, at::Tensor, at::Tensor> qkv_heads(const at::Tensor& x, const at::Tensor& w,
                                                         const at::Tensor& bias, int64_t heads);
/// Index of the largest element of each row of x [rows, n] (NaN largest, ties to the lowest
/// index, as at::argmax): int64 [rows] on x's device.
at::Tensor argmax_rows(const at::Tensor& x);

/// True when this build has the CUDA ops (else CUDA tensors make the ops throw).
bool has_cuda_ops();

}  // namespace eli::ops
