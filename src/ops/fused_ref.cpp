// CPU specification of the fused model stages of eli/ops.h (linear + GELU, bias + residual +
// LayerNorm, embedding + LayerNorm, row argmax): the unfused ATen sequences they stand for, which
// the CUDA kernels are tested against (tests/gpu/) and the CPU path runs as they are.

#include <ATen/ATen.h>

#include <tuple>
#include <utility>

#include "ops/ref.h"

namespace eli::ops {

at::Tensor ref::linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                       bool gelu) {
  at::Tensor y = at::linear(x, w, bias);
  return gelu ? at::gelu(y, "tanh") : y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ref::split_heads(const at::Tensor& qkv,
                                                                int64_t heads) {
  const int64_t b = qkv.size(0), t = qkv.size(1), e = qkv.size(2) / 3;
  auto part = [&](int64_t i) {
    return qkv.narrow(2, i * e, e).view({b, t, heads, e / heads}).transpose(1, 2).contiguous();
  };
  return {part(0), part(1), part(2)};
}

at::Tensor ref::bias_residual_layernorm(at::Tensor& x, const at::Tensor& y, const at::Tensor& bias,
                                        const at::Tensor& ln_w, const at::Tensor& ln_b,
                                        double eps) {
  x.add_(y + bias);
  return at::layer_norm(x, {x.size(-1)}, ln_w, ln_b, eps);
}

std::pair<at::Tensor, at::Tensor> ref::embed_layernorm(const at::Tensor& wte, const at::Tensor& wpe,
                                                       const at::Tensor& ids,
                                                       const at::Tensor& pos0,
                                                       const at::Tensor& ln_w,
                                                       const at::Tensor& ln_b, double eps) {
  const at::Tensor pos = (pos0.reshape({-1, 1}) + at::arange(ids.size(1), pos0.options()))
                             .clamp_max(wpe.size(0) - 1);  // [1 or B, T]
  at::Tensor x = at::embedding(wte, ids) + at::embedding(wpe, pos);
  at::Tensor a = at::layer_norm(x, {x.size(-1)}, ln_w, ln_b, eps);
  return {x, a};
}

at::Tensor ref::argmax_rows(const at::Tensor& x) { return x.argmax(-1); }

}  // namespace eli::ops
