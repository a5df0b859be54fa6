#pragma once
// The plain references of the ops in eli/ops.h: their specification, which the CPU kernels
// and the CUDA kernels are tested against (tests/test_attention_cpu.cpp, tests/gpu/). Not part
// of the installed API.

#include <ATen/ATen.h>

#include <utility>

#include "eli/ops.h"

namespace eli::ops {

/// The CPU specifications (tensors on CPU, any head_dim the layout allows).
namespace ref {
/// The unfused ATen sequences the fused stages of eli/ops.h stand for (any device).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, bool gelu);
at::Tensor bias_residual_layernorm(at::Tensor& x, const at::Tensor& y, const at::Tensor& bias,
                                   const at::Tensor& ln_w, const at::Tensor& ln_b, double eps);
std::pair<at::Tensor, at::Tensor> embed_layernorm(const at::Tensor& wte, const at::Tensor& wpe,
                                                  const at::Tensor& ids, const at::Tensor& pos0,
                                                  const at::Tensor& ln_w, const at::Tensor& ln_b,
                                                  double eps);
at::Tensor argmax_rows(const at::Tensor& x);
std::tuple<at::Tensor, at::Tensor, at::Tensor> split_heads(const at::Tensor& qkv, int64_t heads);
std::pair<at::Tensor, at::Tensor> merge_attention(const at::Tensor& o1, const at::Tensor& lse1,
                                                  const at::Tensor& o2, const at::Tensor& lse2);
void quantize_kv_out(const at::Tensor& x, const KvStore& dst, const SlotMap& slots);
void dequantize_kv_out(const KvStore& src, const SlotMap& slots, at::Tensor& out);
void decode_attention_out(const at::Tensor& q, const KvStore& k, const KvStore& v,
                          const DecodeAttentionArgs& args, at::Tensor& out,
                          at::Tensor* lse = nullptr);
}  // namespace ref

}  // namespace eli::ops
