#pragma once
// The CUDA halves of the ops (ops_cuda.cpp, built only with CUDA LibTorch). Arguments are
// validated here, not by the callers in ops.cpp.

#include "eli/ops.h"

namespace eli::ops::cuda_impl {

void quantize_kv_out(const at::Tensor& x, const KvStore& dst, const SlotMap& slots);
void quantize_kv_pair_out(const at::Tensor& xk, const KvStore& dk, const at::Tensor& xv,
                          const KvStore& dv, const SlotMap& slots);
void dequantize_kv_out(const KvStore& src, const SlotMap& slots, at::Tensor& out);
/// k_new / v_new: optional [B, H, 1, D] in q's dtype, attended as one more key at full
/// precision inside the kernel's reduction; append (with them, fp K/V only): also stored at
/// append->t0_dev (decode_attention_with_new).
void decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                          const DecodeAttentionArgs& args, at::Tensor& out, at::Tensor* lse,
                          const at::Tensor* k_new = nullptr, const at::Tensor* v_new = nullptr,
                          const SlotMap* append = nullptr);

at::Tensor bias_residual_layernorm(at::Tensor& x, const at::Tensor& y, const at::Tensor& bias,
                                   const at::Tensor& ln_w, const at::Tensor& ln_b, double eps);
std::pair<at::Tensor, at::Tensor> embed_layernorm(const at::Tensor& wte, const at::Tensor& wpe,
                                                  const at::Tensor& ids, const at::Tensor& pos0,
                                                  const at::Tensor& ln_w, const at::Tensor& ln_b,
                                                  double eps);
at::Tensor argmax_rows(const at::Tensor& x);
/// Whether the split_heads kernel takes qkv (fp16/fp32, contiguous, aligned, head rows of a
/// multiple of 16 bytes, B and T non-zero).
bool split_heads_applies(const at::Tensor& qkv, int64_t heads);
std::tuple<at::Tensor, at::Tensor, at::Tensor> split_heads(const at::Tensor& qkv, int64_t heads);
/// Whether the merge kernel takes the operands: o1, o2 contiguous fp16/fp32 of one dtype on one
/// device, lse1, lse2 contiguous fp32 [B, H] there.
bool merge_attention_applies(const at::Tensor& o1, const at::Tensor& lse1, const at::Tensor& o2,
                             const at::Tensor& lse2);
std::pair<at::Tensor, at::Tensor> merge_attention(const at::Tensor& o1, const at::Tensor& lse1,
                                                  const at::Tensor& o2, const at::Tensor& lse2);
/// Whether launch_gemv takes x [..., K] w [N, K]: fp16/fp32, at most kGemvMaxRows rows, K a
/// multiple of 16 bytes, w contiguous and aligned.
bool gemv_applies(const at::Tensor& x, const at::Tensor& w);
/// parts > 1: the output laid out [parts, rows, N / parts] (launch_gemv).
at::Tensor gemv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool gelu,
                int64_t parts = 1);

}  // namespace eli::ops::cuda_impl
